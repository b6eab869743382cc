"""Tuning search spaces and their expansion into exactly ``budget`` settings (the equal-budget protocol).

A space maps a key (the ``method_params`` convention: plain = method hyperparameter, dotted =
run-config key) to either a list of values (discrete) or a range ``{low, high, log}``
(continuous; integer when both ends are integers). :func:`expand` is deterministic: the same
space, budget and seed give the same settings, whose names are file paths.

Why hand-written: no library samples a mixed discrete/continuous space with a stratified full
grid of some keys; the low-discrepancy draws themselves are scipy's ``qmc.Sobol``.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import numpy as np

from pmtrec.study.grid import grid_points, slug

SAMPLERS = ("sobol", "random")


class SpaceError(ValueError):
    """A space that cannot give the requested points (the caller names the config key)."""


def is_range(spec: Any) -> bool:
    return isinstance(spec, dict)


def tunable_space(tunable: dict) -> dict:
    """A method's default space from the catalogue's ``tunable``: two numbers are a range (log scale
    when it spans a factor of 10 or more), anything else a list of choices."""
    out = {}
    for key, values in tunable.items():
        values = list(values)
        numeric = len(values) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        if numeric and values[0] < values[1]:
            low, high = values
            out[key] = {"low": low, "high": high, "log": bool(low > 0 and high / low >= 10)}
        else:
            out[key] = values
    return out


def check_range(spec: dict) -> str | None:
    """What is wrong with a range spec, or None."""
    low, high = spec.get("low"), spec.get("high")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
        return f"a range needs numbers low and high, got {spec!r}"
    if not low < high:
        return f"low ({low}) must be below high ({high})"
    if spec.get("log") and low <= 0:
        return f"a log range needs low > 0, got {low}"
    return None


def stable_seed(*parts: Any) -> list[int]:
    """Integer entropy for numpy's SeedSequence from strings and ints (Python's hash() is salted)."""
    return [int(hashlib.sha256(str(p).encode()).hexdigest()[:8], 16) for p in parts]


def _map(spec: Any, u: np.ndarray) -> list:
    """Unit-interval draws -> values of one key (rounded to 3 significant digits: readable names)."""
    if not is_range(spec):
        idx = np.minimum((u * len(spec)).astype(int), len(spec) - 1)
        return [spec[i] for i in idx]
    low, high = spec["low"], spec["high"]
    x = np.exp(np.log(low) + u * (np.log(high) - np.log(low))) if spec.get("log") else low + u * (high - low)
    if isinstance(low, int) and isinstance(high, int):
        return [int(v) for v in np.clip(np.rint(x), low, high)]
    return [float(f"{v:.3g}") for v in x]


def draw(space: dict, n: int, seed: list[int], sampler: str = "sobol", distinct: bool = True) -> list[dict]:
    """``n`` distinct points of ``space`` (SpaceError if it has fewer); ``distinct=False``: ``n``
    points that may repeat (the first ``n`` draws, nothing redrawn)."""
    keys = sorted(space)
    if n <= 0:
        return []
    if not keys:
        if n > 1 and distinct:
            raise SpaceError(f"nothing to vary, cannot give {n} distinct points")
        return [{} for _ in range(n)]
    rng = np.random.default_rng(seed)
    if not any(is_range(space[k]) for k in keys):  # finite: an exact draw without replacement
        sizes = [len(space[k]) for k in keys]
        total = math.prod(sizes)
        if total < n and distinct:
            raise SpaceError(f"{total} distinct points, fewer than the {n} needed")
        coords = np.unravel_index(rng.choice(total, size=n, replace=total < n), sizes)
        return [{k: space[k][int(c[i])] for k, c in zip(keys, coords)} for i in range(n)]
    out: dict[str, dict] = {}
    for attempt in range(8):  # rounding can merge draws: draw more until n distinct ones
        m = max(n, 1) * 2 ** attempt
        if sampler == "sobol":
            from scipy.stats import qmc

            u = qmc.Sobol(d=len(keys), scramble=True, seed=rng).random_base2(math.ceil(math.log2(max(m, 2))))
        else:
            u = rng.random((m, len(keys)))
        columns = {k: _map(space[k], u[:, j]) for j, k in enumerate(keys)}
        if not distinct:
            return [{k: columns[k][i] for k in keys} for i in range(n)]
        for i in range(len(u)):
            point = {k: columns[k][i] for k in keys}
            out.setdefault(slug(point), point)
            if len(out) == n:
                return list(out.values())
    raise SpaceError(f"only {len(out)} distinct points after rounding, fewer than the {n} needed")


def expand(space: dict, own_keys, budget: int, seed: list[int], sampler: str = "sobol") -> list[dict]:
    """Exactly ``budget`` distinct settings of ``space``.

    When the grid of the discrete ``own_keys`` (the method's own knobs) has at most ``budget``
    points, every one of them is used, each paired with ``budget // grid`` (or one more) distinct
    draws of the other keys (the shared lr / l2 knobs and continuous ranges); otherwise ``budget``
    distinct points are drawn from the whole space."""
    grid_keys = sorted(k for k in own_keys if k in space and not is_range(space[k]))
    return _stratified(space, grid_keys, budget, seed, sampler, distinct=True)


def _stratified(space: dict, grid_keys: list[str], budget: int, seed: list[int], sampler: str,
                distinct: bool) -> list[dict]:
    """``budget`` points of ``space``: every point of the grid of ``grid_keys`` with ``budget // grid``
    (or one more) draws of the other keys, or ``budget`` distinct draws of the whole space when the
    grid is larger than the budget."""
    grid = grid_points({k: space[k] for k in grid_keys})
    if len(grid) > budget:
        return draw(space, budget, seed, sampler)
    rest = {k: v for k, v in space.items() if k not in grid_keys}
    points = []
    for i, fixed in enumerate(grid):  # one draw per grid point of the config, not per sample
        quota = budget // len(grid) + (i < budget % len(grid))
        points += [{**fixed, **d} for d in draw(rest, quota, seed + [i], sampler, distinct=distinct)]
    return points


def pair(shared: list[dict], own: dict, seed: list[int], sampler: str = "sobol") -> list[dict]:
    """One setting per point of ``shared`` (the study's common draws of the shared knobs, in order),
    each with a point of the method's ``own`` space (its key wins over a shared one).

    Own points as :func:`expand` stratifies them: when the grid of the discrete own knobs has at
    most ``len(shared)`` points, grid point j takes a contiguous block of ``len(shared) // grid``
    (or one more) shared points, with draws of the continuous own knobs that may repeat (the shared
    point already makes the setting distinct). Blocks, not every grid-th point: every other point
    of a scrambled Sobol sequence can lie in one half of a coordinate (scipy's do), so striding
    could give a grid point only low or only high learning rates. Otherwise ``len(shared)``
    distinct draws of ``own``."""
    grid_keys = sorted(k for k in own if not is_range(own[k]))
    mine = _stratified(own, grid_keys, len(shared), seed, sampler, distinct=False)
    return [{**s, **m} for s, m in zip(shared, mine)]
