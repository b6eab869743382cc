"""Small pure helpers of the planner: merging, grids, their file names, and job argument strings."""

from __future__ import annotations

import copy
import itertools
import json
import re
import shlex


# ---- small pure helpers --------------------------------------------------------------------------
def deep_merge(base: dict, update: dict | None) -> dict:
    out = copy.deepcopy(base)
    for key, value in (update or {}).items():
        if isinstance(out.get(key), dict) and isinstance(value, dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def set_args(pairs) -> str:
    """--set KEY=VALUE arguments; values as JSON (valid YAML), so strings, lists and dicts survive."""
    return " ".join("--set " + shlex.quote(f"{k}={json.dumps(v, sort_keys=True)}") for k, v in pairs)


def slug(values: dict) -> str:
    """A readable, stable path component for a grid point: 'focus_max=0.5+tau=1.0'. No comma:
    Snakemake's --target-jobs (how a SLURM job names its own job) splits wildcard values on commas."""
    def fmt(v):
        if isinstance(v, (list, tuple)):
            return "_".join(fmt(x) for x in v)
        text = v if isinstance(v, str) else json.dumps(v, sort_keys=True, separators=(",", ":"))
        return re.sub(r"[^A-Za-z0-9_.+-]", "_", text)

    return "+".join(f"{k}={fmt(values[k])}" for k in sorted(values)) or "default"


def canon(obj):
    """Dicts with sorted keys, recursively: params that do not change when the YAML is reordered."""
    if isinstance(obj, dict):
        return {k: canon(obj[k]) for k in sorted(obj)}
    if isinstance(obj, (list, tuple)):
        return [canon(v) for v in obj]
    return obj


def grid_points(grid: dict) -> list[dict]:
    keys = sorted(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]
