"""The catalogue of methods: every name a run can use, with what the report and the workflow need.

Three kinds share one namespace:

* a **method** (:class:`~pmtrec.methods.base.Method` subclass, ``@register``) combines the task
  losses or gradients of every step;
* a **variant** (:func:`register_variant`) is a method with some switches fixed, e.g. PMTRec's
  ablations;
* a **baseline model** (:class:`BaselineModel` subclass, ``@register``) ranks without multi-task
  training (e.g. popularity): no tasks, no embeddings, no hyperparameters.

Each class carries its own metadata (family, label, colour, display order, tunable ranges), so
the CLI (``pmtrec methods --json``), the workflow's checks, the report and the docs all read it
from here instead of keeping copies. ``register`` is public: a plugin module (config key
``plugins``) registers its own methods the same way (docs/extending.md).
"""

from __future__ import annotations

import difflib
import inspect
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, NamedTuple, Sequence

from pmtrec.errors import ConfigError
from pmtrec.methods.base import Method

KINDS = ("method", "variant", "model")


class BaselineModel:
    """A ranking that needs no multi-task training; subclasses set the metadata and ``item_scores``."""

    name: ClassVar[str]
    family: ClassVar[str] = "baseline model"
    label: ClassVar[str] = ""
    colour: ClassVar[str] = ""
    order: ClassVar[int] = 1000

    def item_scores(self, train, n_items: int):
        """One score per item ([n_items] float tensor), the same ranking for every user."""
        raise NotImplementedError


class Variant(NamedTuple):
    base: str
    switches: dict[str, Any]
    label: str
    colour: str
    order: int


METHODS: dict[str, type[Method]] = {}
MODELS: dict[str, type[BaselineModel]] = {}
VARIANTS: dict[str, Variant] = {}


def _taken(name: str) -> bool:
    return name in METHODS or name in MODELS or name in VARIANTS


def register(cls):
    """Class decorator: add a :class:`Method` or :class:`BaselineModel` subclass under ``cls.name``."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise ValueError(f"{cls.__name__}: a registered class needs a `name`")
    if _taken(name):
        raise ValueError(f"method '{name}' registered twice")
    if isinstance(cls, type) and issubclass(cls, Method):
        METHODS[name] = cls
    elif isinstance(cls, type) and issubclass(cls, BaselineModel):
        MODELS[name] = cls
    else:
        raise TypeError(f"{cls!r}: register takes a Method or BaselineModel subclass")
    return cls


def register_variant(name: str, base: str, *, label: str = "", colour: str = "", order: int | None = None,
                     **switches: Any) -> None:
    """A named preset, e.g. ``pmtrec-no-focus`` = ``pmtrec`` with ``focus=False``."""
    if _taken(name):
        raise ValueError(f"method '{name}' registered twice")
    if base not in METHODS:
        raise ValueError(f"variant '{name}': unknown base method '{base}'")
    bad = [k for k in switches if k not in method_parameters(METHODS[base])]
    if bad:
        raise ValueError(f"variant '{name}': {', '.join(bad)} not parameters of '{base}'")
    VARIANTS[name] = Variant(base, dict(switches), label, colour,
                             METHODS[base].order + 1 + len([v for v in VARIANTS.values() if v.base == base])
                             if order is None else order)


def unregister(name: str) -> None:
    """Remove a name (tests that register throwaway methods)."""
    for table in (METHODS, MODELS, VARIANTS):
        table.pop(name, None)


def available(kind: str | Sequence[str] = KINDS) -> list[str]:
    kinds = (kind,) if isinstance(kind, str) else tuple(kind)
    tables = {"method": METHODS, "variant": VARIANTS, "model": MODELS}
    return sorted(n for k in kinds for n in tables[k])


def unknown_name(name: str, where: str = "train.method") -> ConfigError:
    close = difflib.get_close_matches(name, available(), n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return ConfigError(f"{where}: unknown method '{name}'{hint} (known: {', '.join(available())})")


def method_parameters(cls: type[Method]) -> dict[str, Any]:
    """The constructor's hyperparameters and their defaults (``task_names`` excluded)."""
    out = {}
    for p in list(inspect.signature(cls.__init__).parameters.values())[1:]:
        if p.name == "task_names" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        out[p.name] = None if p.default is inspect.Parameter.empty else p.default
    return out


# ---- catalogue entries -------------------------------------------------------------------------
@dataclass(frozen=True)
class Entry:
    """What the rest of the project may know of a name (``pmtrec methods --json``)."""

    name: str
    kind: str                     # method | variant | model
    family: str                   # loss weighting | gradient | baseline model
    label: str                    # display name in the report
    colour: str                   # hex colour in every figure ("" = a stable fallback)
    order: int                    # display order (lower first)
    summary: str                  # first line of the docstring
    implementation: str           # hand, or the library it wraps
    trains: bool                  # trains embeddings (False: a baseline model)
    task_set: str                 # all: every task the dataset has; main: the main task alone
    uses_grads: bool              # reads per-task gradients
    stateful: bool                # keeps state across steps (checkpointed)
    symmetry: str                 # task permutations that leave the update unchanged: all | aux | none
    params: dict[str, Any] = field(default_factory=dict)   # hyperparameters and defaults
    tunable: dict[str, list] = field(default_factory=dict)  # hyperparameter -> [low, high] to search
    base: str | None = None       # variants: the method they fix switches of
    switches: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _summary(cls) -> str:
    """The docstring's first line, without reST markup (it is printed on terminals)."""
    return ((cls.__doc__ or "").strip().splitlines() or [""])[0].replace("``", "")


def entry(name: str, where: str = "train.method") -> Entry:
    """The catalogue entry of ``name``; a one-line ConfigError (with a suggestion) if unknown."""
    if name in METHODS:
        cls = METHODS[name]
        return Entry(name=name, kind="method", family=cls.family, label=cls.label or name, colour=cls.colour,
                     order=cls.order, summary=_summary(cls), implementation=cls.implementation, trains=True,
                     task_set=cls.task_set,
                     uses_grads=cls.uses_grads, stateful=cls.stateful, symmetry=cls.symmetry,
                     params=method_parameters(cls),
                     tunable={k: list(v) for k, v in cls.tunable.items()})
    if name in VARIANTS:
        v = VARIANTS[name]
        base = entry(v.base)
        return Entry(name=name, kind="variant", family=base.family, label=v.label or name,
                     colour=v.colour, order=v.order,
                     summary=f"{v.base} with " + ", ".join(f"{k}={val}" for k, val in v.switches.items()),
                     implementation=base.implementation, trains=True, task_set=base.task_set, uses_grads=base.uses_grads, stateful=base.stateful,
                     symmetry=base.symmetry,
                     params={k: val for k, val in base.params.items() if k not in v.switches},
                     tunable={k: val for k, val in base.tunable.items() if k not in v.switches},
                     base=v.base, switches=dict(v.switches))
    if name in MODELS:
        cls = MODELS[name]
        return Entry(name=name, kind="model", family=cls.family, label=cls.label or name, colour=cls.colour,
                     order=cls.order, summary=_summary(cls), implementation="hand", trains=False, task_set="main",
                     uses_grads=False, stateful=False, symmetry="all")
    raise unknown_name(name, where)


def entries() -> list[Entry]:
    """Every registered name, in display order."""
    return sorted((entry(n) for n in available()), key=lambda e: (e.order, e.name))


# ---- building ----------------------------------------------------------------------------------
def resolve(name: str, params: dict[str, Any] | None = None,
            where: str = "train.method_params") -> tuple[type[Method], dict[str, Any]]:
    """The method class of a method or variant name and its full keyword arguments."""
    params = dict(params or {})
    if name in VARIANTS:
        base, preset = VARIANTS[name][:2]
        params = {**preset, **params}
        name = base
    if name in MODELS:
        if params:
            raise ConfigError(f"{where}: '{name}' is a baseline model without hyperparameters "
                              f"(got {', '.join(params)})")
        raise ConfigError(f"train.method: '{name}' is a baseline model, not a multi-task method")
    if name not in METHODS:
        raise unknown_name(name)
    cls = METHODS[name]
    accepted = method_parameters(cls)
    for key in params:
        if key not in accepted:
            close = difflib.get_close_matches(key, list(accepted), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"{where}.{key}: not a parameter of method '{name}'{hint} "
                              f"(its parameters: {', '.join(accepted) or 'none'})")
    return cls, params


def build_method(name: str, task_names: Sequence[str], params: dict[str, Any] | None = None,
                 where: str = "train.method_params") -> Method:
    cls, params = resolve(name, params, where)
    try:
        return cls(task_names, **params)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where} for '{name}': {exc}") from None


def check_params(name: str, params: dict[str, Any] | None, where: str = "train.method_params",
                 task_names: Sequence[str] = ("rec", "social", "category", "coview")) -> None:
    """Build the method once with ``params``; a one-line ConfigError naming the key if they are wrong.

    What the workflow runs at parse time for every method's fixed parameters and grid points.
    """
    if name in MODELS:
        if params:
            raise ConfigError(f"{where}: '{name}' is a baseline model without hyperparameters")
        return
    cls, full = resolve(name, params, where)
    try:
        cls(task_names, **full)
        return
    except (TypeError, ValueError) as exc:
        reason = str(exc)
    for key, value in (params or {}).items():  # which key: the first that fails on its own
        try:
            cls(task_names, **{**resolve(name, {}, where)[1], key: value})
        except (TypeError, ValueError) as exc:
            text = str(exc)
            if isinstance(exc, TypeError):
                text = f"invalid value {value!r} ({text})"
            raise ConfigError(f"{where}.{key}: {text}") from None
    raise ConfigError(f"{where} for '{name}': {reason}")


def markdown_table() -> str:
    """The catalogue as the Markdown table of docs/methods.md (``pmtrec methods --markdown``)."""
    def fmt(v):
        return "null" if v is None else str(v).lower() if isinstance(v, bool) else f"{v:g}" if isinstance(v, float) \
            else str(v)

    lines = ["| method | kind | family | implementation | hyperparameters (defaults) | tuned over |",
             "|---|---|---|---|---|---|"]
    for e in entries():
        params = ", ".join(f"`{k}` = {fmt(v)}" for k, v in e.params.items()) if e.kind != "variant" else \
            ", ".join(f"`{k}` = {fmt(v)}" for k, v in e.switches.items()) + f" (else as `{e.base}`)"
        tunable = ", ".join(f"`{k}` in " + (f"[{fmt(v[0])}, {fmt(v[1])}]" if all(isinstance(x, (int, float)) for x in v)
                                             else "{" + ", ".join(map(str, v)) + "}") for k, v in e.tunable.items())
        lines.append(f"| `{e.name}` | {e.kind} | {e.family} | {e.implementation} | {params or '-'} | "
                     f"{tunable if e.kind == 'method' and tunable else '-'} |")
    return "\n".join(lines) + "\n"
