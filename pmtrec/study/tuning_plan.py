"""Which methods a study tunes, over which space, and the named settings of each (config `tune`).

Budgeted (``tune.budget`` > 0): every trained method the study uses (the main methods, the bases of
the ablation variants, the embedding-size sweep's methods) gets exactly ``budget`` settings of
``tune.space.shared`` x its own knobs (``tune.space.<method>``, default: the catalogue's
``tunable`` ranges). Untrained baseline models get none. Legacy (budget 0): ``tune.grids``, each
method's full grid, tuned when it has more than one point.

``tune.draws``: ``per_method`` draws each method's whole space seeded by its name; ``shared``
(common random numbers) draws the shared knobs once per study and gives every method's setting i
shared point i, so methods are compared on the same lr / l2 values, not on the luck of their draws.
"""

from __future__ import annotations

from pmtrec.study.checks import config_error
from pmtrec.study.grid import canon, grid_points, slug
from pmtrec.study.space import SpaceError, check_range, draw, expand, is_range, pair, stable_seed, tunable_space

SHARED_TAG = "tune.space.shared"  # seeds the common draws: no method name, so no method moves them


def named(points: list[dict], where: str) -> dict[str, dict]:
    """Setting name (a path component) -> values; two settings with one name are an error."""
    out = {slug(p): canon(p) for p in points}
    if len(out) < len(points):
        config_error(where, "two settings share a file name; make the values distinct")
    return out


def method_space(tune: dict, method) -> tuple[dict, dict]:
    """(space, where) of a method: the shared knobs updated by its own; where: key -> config key."""
    shared = tune["space"].get("shared") or {}
    own = tune["space"].get(method.name)
    source = f"tune.space.{method.name}"
    if own is None:
        own, source = tunable_space(method.tunable), f"tune.space.{method.name} (default: the catalogue's tunable)"
    where = {k: f"tune.space.shared.{k}" for k in shared} | {k: f"{source}.{k}" for k in own}
    return {**shared, **own}, where


def common_draws(tune: dict, budget: int) -> list[dict]:
    """``tune.draws: shared``: the study's ``budget`` distinct points of ``tune.space.shared``."""
    shared = tune["space"].get("shared") or {}
    for key, spec in shared.items():
        why = check_range(spec) if is_range(spec) else None
        if why:
            config_error(f"tune.space.shared.{key}", why)
    try:
        return draw(shared, budget, [tune["sampler_seed"], *stable_seed(SHARED_TAG)], tune["sampler"])
    except SpaceError as exc:
        config_error("tune.space.shared", f"{exc} for tune.budget {budget} (tune.draws: shared gives every "
                                          "method the same distinct shared points); widen tune.space.shared")


def tuning_plan(tune: dict, used: list[str], entry) -> tuple[dict[str, dict], dict[str, dict[str, dict]]]:
    """(method -> space, method -> {setting name: values}) of the tuned methods."""
    budget = tune["budget"]
    if not budget:
        if tune["space"]:
            config_error("tune.space", "needs tune.budget (the number of settings every tuned method gets)")
        spaces = {m: g for m, g in tune["grids"].items() if len(grid_points(g)) > 1 and m in used}
        return spaces, {m: named(grid_points(g), f"tune.grids.{m}") for m, g in spaces.items()}
    if tune["grids"]:
        config_error("tune.grids", "the unbudgeted legacy form: with tune.budget, give the knobs in tune.space "
                                   "(shared: run-config knobs of every method; <method>: its own)")
    for key in tune["space"].get("shared") or {}:
        if "." not in key:
            config_error(f"tune.space.shared.{key}", "shared knobs are run-config keys (dotted, e.g. train.lr); "
                                                     "a method's own knob goes under tune.space.<method>")
    common = common_draws(tune, budget) if tune["draws"] == "shared" else None
    spaces, points = {}, {}
    for name in used:
        method = entry(name)
        if method.kind != "method":  # an untrained baseline model (variants are not in `used`)
            continue
        space, where = method_space(tune, method)
        for key, spec in space.items():
            why = check_range(spec) if is_range(spec) else None
            if why:
                config_error(where[key], why)
        own = [k for k in space if not where[k].startswith("tune.space.shared.")]
        seed = [tune["sampler_seed"], *stable_seed(name)]
        try:  # seeded by the method's name: its settings do not move when another method is added
            if common is None:
                drawn = expand(space, own, budget, seed, tune["sampler"])
            else:
                drawn = pair(common, {k: space[k] for k in own}, seed, tune["sampler"])
        except SpaceError as exc:
            config_error(f"tune.space.{name}", f"{exc} for tune.budget {budget}; widen the space "
                                               "(its own knobs or tune.space.shared)")
        if common is not None and len({slug(p) for p in drawn}) < budget:  # only when own keys replace shared ones
            replaced = sorted(set(own) & set(tune["space"].get("shared") or {}))
            config_error(f"tune.space.{name}", f"its settings repeat with tune.draws: shared: its own "
                                               f"{', '.join(replaced)} replaces the shared draws; drop it "
                                               "there or use tune.draws: per_method")
        spaces[name] = space
        points[name] = named(drawn, f"tune.space.{name}")
    return spaces, points
