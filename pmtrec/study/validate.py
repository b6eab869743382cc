"""The study's own checks, run when a :class:`~pmtrec.study.plan.Study` is built (a mixin).

Names (methods, variants, sources, datasets) against the catalogue and the config; then every
value a job will use: run settings, each method's fixed parameters and each grid point, by
building the method once per dataset's task set (:mod:`pmtrec.study.checks` has the checks).
"""

from __future__ import annotations

import json
import re

from pmtrec.study import checks
from pmtrec.study.checks import config_error, split_params
from pmtrec.study.grid import deep_merge, grid_points


def canon_key(value) -> str:
    """A hashable key of any config value (lists, dicts)."""
    return json.dumps(value, sort_keys=True)


class StudyChecks:
    """Checks of a :class:`~pmtrec.study.plan.Study` (reads ``cfg`` and ``entry`` of the study)."""

    def _all_names(self) -> list[str]:
        cfg = self.cfg
        names = [*cfg["methods"], *cfg["ablation"]["variants"], cfg["sensitivity"]["method"],
                 *cfg["sensitivity"]["dim_methods"], *cfg["method_params"], *cfg["tune"]["grids"],
                 *(m for m in cfg["tune"]["space"] if m != "shared"),
                 *(d["method"] for d in cfg["tune"]["development"]),
                 *(cfg["analysis"]["map_methods"] or []), cfg["significance"]["reference"],
                 *(cfg["significance"]["exclude"] or [])]
        return list(dict.fromkeys(names))

    def _check_names(self) -> None:
        """Method and source names exist (plugins loaded), cross-references point somewhere."""
        from pmtrec.data.sources import source_info
        from pmtrec.errors import ConfigError
        from pmtrec.methods import entry

        cfg = self.cfg
        named = [(f"methods[{i}]", m) for i, m in enumerate(cfg["methods"])]
        named += [(f"ablation.variants[{i}]", m) for i, m in enumerate(cfg["ablation"]["variants"])]
        named += [("sensitivity.method", cfg["sensitivity"]["method"])]
        named += [(f"sensitivity.dim_methods[{i}]", m) for i, m in enumerate(cfg["sensitivity"]["dim_methods"])]
        named += [(f"method_params.{m}", m) for m in cfg["method_params"]]
        named += [(f"tune.grids.{m}", m) for m in cfg["tune"]["grids"]]
        named += [(f"tune.space.{m}", m) for m in cfg["tune"]["space"] if m != "shared"]
        named += [(f"tune.development[{i}].method", d["method"]) for i, d in enumerate(cfg["tune"]["development"])]
        named += [(f"analysis.map_methods[{i}]", m) for i, m in enumerate(cfg["analysis"]["map_methods"] or [])]
        named += [("significance.reference", cfg["significance"]["reference"])]
        named += [(f"significance.exclude[{i}]", m) for i, m in enumerate(cfg["significance"]["exclude"] or [])]
        for where, name in named:
            checks.check_method_name(name, where)
        for i, v in enumerate(cfg["ablation"]["variants"]):
            if entry(v).kind != "variant":
                config_error(f"ablation.variants[{i}]", f"'{v}' is not an ablation variant (see `pmtrec methods`)")
        for name, e in cfg["datasets"].items():
            try:
                source_info(e["source"])
            except ConfigError as exc:
                config_error(f"datasets.{name}.source", str(exc).removeprefix("dataset.source: "))
        reference = cfg["significance"]["reference"]
        for name, e in cfg["datasets"].items():
            chosen = e.get("methods") or []
            for i, m in enumerate(chosen):
                if m not in cfg["methods"]:
                    config_error(f"datasets.{name}.methods[{i}]", f"'{m}' is not in `methods` "
                                                                 f"({', '.join(cfg['methods'])})")
            if chosen and reference in cfg["methods"] and reference not in chosen:
                config_error(f"datasets.{name}.methods", f"lacks significance.reference '{reference}', "
                                                         "which every dataset's comparison is made against")
        for i, d in enumerate(cfg["tune"]["development"]):
            if d["dataset"] not in cfg["datasets"]:
                config_error(f"tune.development[{i}].dataset", f"unknown dataset '{d['dataset']}' (configured: "
                                                               f"{', '.join(cfg['datasets'])})")
        for section in ("ablation", "sensitivity"):
            for i, name in enumerate(cfg[section]["datasets"] or []):
                if name not in cfg["datasets"]:
                    config_error(f"{section}.datasets[{i}]", f"unknown dataset '{name}' (configured: "
                                                              f"{', '.join(cfg['datasets'])})")

    def _check_values(self) -> None:
        """Run settings, method parameters and grid values: the checks `pmtrec train` runs, now."""
        cfg = self.cfg
        checks.check_run_fragment(cfg["run"], "run")
        for name, e in cfg["datasets"].items():
            checks.check_run_fragment(deep_merge(cfg["run"], e.get("run") or {}), f"datasets.{name}.run")
        for method, params in cfg["method_params"].items():
            e = self.entry[method]
            if e.kind == "variant":
                config_error(f"method_params.{method}", f"an ablation variant takes {e.base}'s hyperparameters "
                                                        f"(set them under method_params.{e.base})")
            plain, dotted = split_params(params)
            self._check_no_switches(method, plain, f"method_params.{method}")
            for key, value in dotted.items():
                checks.check_dotted(key, value, f"method_params.{method}")
            self._check_params_everywhere(method, plain, f"method_params.{method}")
        for section in ("grids", "space"):
            for method in (m for m in cfg["tune"][section] if m != "shared"):
                e = self.entry[method]
                if e.kind != "method":
                    config_error(f"tune.{section}.{method}", "only trained methods other than the ablation variants "
                                 f"are tuned ('{method}' is a {'baseline model' if e.kind == 'model' else 'variant'})")
        for method, grid in cfg["tune"]["grids"].items():
            self._check_grid(method, grid, f"tune.grids.{method}")
        if cfg["tune"]["budget"]:
            checked = self.__dict__.setdefault("_dotted_checked", set())
            for key, spec in (cfg["tune"]["space"].get("shared") or {}).items():  # every listed value, drawn or not
                for value in (spec if isinstance(spec, list) else [spec["low"], spec["high"]]):
                    checks.check_dotted(key, value, "tune.space.shared")
                    checked.add((key, canon_key(value)))
            for method, points in self.points.items():
                self._check_points(method, list(points.values()), f"tune.space.{method}")
        self._check_seeds_and_splits()
        sens = cfg["sensitivity"]
        if sens["grid"]:
            if self.entry[sens["method"]].kind == "model":
                config_error("sensitivity.method", f"{sens['method']} is a baseline model without hyperparameters")
            self._check_grid(sens["method"], sens["grid"], "sensitivity.grid")
        for i, m in enumerate(cfg["analysis"]["map_methods"] or []):
            if not self.entry[m].trains or m not in cfg["methods"]:
                config_error(f"analysis.map_methods[{i}]", f"'{m}' is not a main method with embeddings "
                                                            f"(methods: {', '.join(cfg['methods'])}; not a "
                                                            "baseline model)")
        for i, m in enumerate(sens["dim_methods"] if sens["dim"] else []):
            if not self.entry[m].trains:
                config_error(f"sensitivity.dim_methods[{i}]", f"'{m}' is a baseline model without embeddings")
        checks.check_local_files(cfg)

    def _check_no_switches(self, method: str, plain: dict, where: str) -> None:
        from pmtrec.methods import VARIANTS

        switches = {k for v in VARIANTS.values() if v.base == method for k in v.switches}
        for key in plain:
            if key in switches:
                config_error(f"{where}.{key}", "an ablation switch: set by the ablation variants")

    def _check_grid(self, method: str, grid: dict, where: str) -> None:
        plain_keys = [k for k in grid if "." not in k]
        self._check_no_switches(method, dict.fromkeys(plain_keys), where)
        fixed, _ = split_params(self.cfg["method_params"].get(method) or {})
        for key in grid:
            if "." in key:
                for value in grid[key]:
                    checks.check_dotted(key, value, where)
        for point in grid_points({k: grid[k] for k in plain_keys}):
            self._check_params_everywhere(method, {**fixed, **point}, where)

    def _check_points(self, method: str, points: list[dict], where: str) -> None:
        """Every drawn setting of a budgeted space: run-config values and the method built with each."""
        plain = [k for k in self.spaces[method] if "." not in k]
        self._check_no_switches(method, dict.fromkeys(plain), where)
        fixed, _ = split_params(self.cfg["method_params"].get(method) or {})
        checked = self.__dict__.setdefault("_dotted_checked", set())  # shared knobs: once, not per method
        for key in (k for k in self.spaces[method] if "." in k):
            for value in {canon_key(p[key]): p[key] for p in points}.values():
                if (key, canon_key(value)) not in checked:
                    own = key in (self.cfg["tune"]["space"].get(method) or {})
                    checks.check_dotted(key, value, where if own else "tune.space.shared")
                    checked.add((key, canon_key(value)))
        for point in {canon_key({k: p[k] for k in plain}): {k: p[k] for k in plain} for p in points}.values():
            self._check_params_everywhere(method, {**fixed, **point}, where)

    def _check_seeds_and_splits(self) -> None:
        """Tuning seeds are never reported seeds; a per-run split owns preprocess.seed."""
        cfg = self.cfg
        if self.spaces:
            reported = {"seeds": self.seeds, "ablation.seeds": self.ablation_seeds,
                        "sensitivity.seeds": self.sens_seeds}
            for key, seeds in reported.items():
                shared = sorted(set(self.tune_seeds) & set(seeds))
                if shared:
                    config_error("tune.seeds", f"{shared} also in {key} {list(seeds)}: tuning runs need held-out "
                                               "seeds (e.g. tune.seeds: [100])")
        if self.split_seed == "run":
            runs = [("run", cfg["run"])] + [(f"datasets.{d}.run", e.get("run") or {})
                                            for d, e in cfg["datasets"].items()]
            for where, run in runs:
                if "seed" in (run.get("preprocess") or {}):
                    config_error(f"{where}.preprocess.seed", "set by split_seed: run (each run's seed seeds its "
                                                             "split); drop it, or use split_seed: fixed")
            for d in cfg["datasets"]:
                if re.search(r"\.split\d+$", d):
                    config_error(f"datasets.{d}", "a name ending in .split<N> is the folder of a split seed "
                                                  "(split_seed: run); rename the dataset")

    def _check_params_everywhere(self, method: str, params: dict, where: str) -> None:
        """The method built with ``params`` for the tasks of each dataset (e.g. static's weights)."""
        for names in dict.fromkeys(self.task_names(d) for d in self.cfg["datasets"]):
            checks.check_method_params(method, params, where, names)
