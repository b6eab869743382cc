"""One look for every report figure: a fixed colour per method, a seaborn theme, SVG output.

Colours are fixed per method name (not per figure), so a method has the same colour in every
figure of the report. They come from Paul Tol's colour-blind-safe schemes (muted, light, bright,
high-contrast) and the Okabe-Ito palette; PMTRec is vermillion and drawn on top, thicker and
with a black edge (:func:`emphasis`). Lines also get a marker per method, so figures stay
readable in greyscale and for readers who confuse two of the colours.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Iterable

REFERENCE = "pmtrec"

_MARKERS = ("o", "s", "^", "v", "D", "P", "X", "<", ">", "p", "h", "*", "d", "H", "8")
_FALLBACK = ("#4477AA", "#EE6677", "#228833", "#CCBB44", "#66CCEE", "#AA3377", "#BBBBBB", "#000000")

# Method labels, colours and display order come from the catalogue (pmtrec.methods: each class
# carries its own); a study's methods table (tables/methods.csv, written by aggregate) adds those
# of plugin methods, which this process may not have imported (use_methods_table).
_EXTRA: dict[str, dict] = {}


@functools.lru_cache(maxsize=1)
def _catalogue() -> dict[str, dict]:
    from pmtrec.methods import entries

    return {e.name: {"label": e.label, "colour": e.colour, "order": e.order} for e in entries()}


def _info(method: str) -> dict | None:
    return _EXTRA.get(method) or _catalogue().get(method)


def use_methods_table(df) -> None:
    """Display metadata of a study's methods (columns method, label, colour, order)."""
    for r in df.to_dict("records"):
        colour = r.get("colour")
        _EXTRA[str(r["method"])] = {"label": str(r["label"]), "colour": colour if isinstance(colour, str) else "",
                                    "order": int(r["order"])}


def method_order() -> list[str]:
    """Every known method name in display order."""
    names = {**_catalogue(), **_EXTRA}
    return sorted(names, key=lambda m: (names[m]["order"], m))


# Auxiliary tasks and their colours (Okabe-Ito; "rec" is the main task).
TASK_ORDER = ("rec", "social", "category", "coview")
TASK_LABELS = {"rec": "rec (main)", "social": "social", "category": "category", "coview": "co-view"}
TASK_COLORS = {"rec": "#0072B2", "social": "#E69F00", "category": "#009E73", "coview": "#CC79A7"}

# Print sizes (inches) for an A4 page with ~2 cm margins: full text width and half of it.
FULL_WIDTH = 6.6
HALF_WIDTH = 3.2
FONT_SIZE = 9


def method_key(method: str) -> tuple:
    """Sort key: the catalogue's display order, unknown methods after, alphabetically."""
    info = _info(method)
    return (info["order"], method) if info else (10**9, method)


def order_methods(methods: Iterable[str]) -> list[str]:
    return sorted(dict.fromkeys(methods), key=method_key)


def label(method: str) -> str:
    info = _info(method)
    return info["label"] if info and info["label"] else method


def color(method: str) -> str:
    info = _info(method)
    if info and info["colour"]:
        return info["colour"]
    # stable for unknown names (hash() of str is salted per process, so do it by hand)
    return _FALLBACK[sum(map(ord, method)) % len(_FALLBACK)]


def marker(method: str) -> str:
    if method == REFERENCE:
        return "*"
    order = method_order()
    i = order.index(method) if method in order else sum(map(ord, method))
    return _MARKERS[i % len(_MARKERS)]


def palette(methods: Iterable[str]) -> dict[str, str]:
    return {m: color(m) for m in methods}


def task_label(task: str) -> str:
    return TASK_LABELS.get(task, task)


def task_color(task: str) -> str:
    return TASK_COLORS.get(task, _FALLBACK[sum(map(ord, task)) % len(_FALLBACK)])


def order_tasks(tasks: Iterable[str]) -> list[str]:
    tasks = list(dict.fromkeys(tasks))
    return sorted(tasks, key=lambda t: (TASK_ORDER.index(t) if t in TASK_ORDER else len(TASK_ORDER), t))


def emphasis(method: str) -> dict:
    """Line keyword arguments: PMTRec thicker, on top, with a black-edged star."""
    if method == REFERENCE:
        return {"linewidth": 2.4, "zorder": 10, "markersize": 9, "markeredgecolor": "black",
                "markeredgewidth": 0.6}
    return {"linewidth": 1.3, "zorder": 3, "markersize": 5}


def errbars(std):
    """Error-bar lengths from a std column; None (no bars) when no std is defined (one seed)."""
    return std.fillna(0).to_numpy() if std.notna().any() else None


def metric_label(metric: str) -> str:
    """'ndcg@20' -> 'NDCG@20', 'recall@10' -> 'Recall@10'."""
    name, _, k = metric.partition("@")
    pretty = {"ndcg": "NDCG", "recall": "Recall", "precision": "Precision", "hit": "Hit", "mrr": "MRR",
              "map": "MAP"}.get(name, name)
    return f"{pretty}@{k}" if k else pretty


def log_axes(ax, x: bool = True, y: bool = True) -> None:
    """Log scales with plain tick labels (1, 2, 5, 10, 20, ...) and no crowded minor labels."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    def plain(v, _pos):
        return f"{v:,.0f}" if v >= 1 else f"{v:g}"

    for on, axis, setter in ((x, ax.xaxis, ax.set_xscale), (y, ax.yaxis, ax.set_yscale)):
        if not on:
            continue
        setter("log")
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(FuncFormatter(plain))
        axis.set_minor_formatter(NullFormatter())


def theme() -> None:
    """The seaborn theme and matplotlib settings of every report figure."""
    import matplotlib

    if not _in_notebook():
        matplotlib.use("Agg")
    import seaborn as sns

    sns.set_theme(context="paper", style="whitegrid", font_scale=1.0, rc={
        "font.family": "DejaVu Sans",
        "font.size": FONT_SIZE, "axes.titlesize": FONT_SIZE + 1, "axes.labelsize": FONT_SIZE,
        "xtick.labelsize": FONT_SIZE - 1, "ytick.labelsize": FONT_SIZE - 1,
        "legend.fontsize": FONT_SIZE - 1, "legend.title_fontsize": FONT_SIZE,
        "figure.titlesize": FONT_SIZE + 2,
        "axes.edgecolor": "#444444", "grid.color": "#E5E5E5", "axes.linewidth": 0.8,
        "svg.fonttype": "path",   # text as outlines: identical rendering in typst, no font lookup
        "svg.hashsalt": "pmtrec",  # deterministic element ids
        "figure.dpi": 110, "savefig.bbox": "tight", "savefig.pad_inches": 0.03,
        "axes.spines.top": False, "axes.spines.right": False,
        "legend.frameon": False,
        # tick labels show the values themselves: no "1e-5+1.584e-1" offset above an axis whose
        # values differ in the fifth decimal, and no "×1e-4" multiplier for small differences
        "axes.formatter.useoffset": False, "axes.formatter.limits": (-7, 7),
    })


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and shell.__class__.__name__ == "ZMQInteractiveShell"


def savefig(fig, path: str | Path) -> Path:
    """Write ``fig`` as SVG (vector, what the PDF embeds), atomically; returns the path."""
    from pmtrec.io import atomic_path

    path = Path(path).with_suffix(".svg")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="svg", metadata={"Date": None})
    return path
