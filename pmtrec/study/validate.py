"""The study's own checks, run when a :class:`~pmtrec.study.plan.Study` is built (a mixin).

Names (methods, variants, sources, datasets) against the catalogue and the config; then every
value a job will use: run settings, each method's fixed parameters and each grid point, by
building the method once per dataset's task set (:mod:`pmtrec.study.checks` has the checks).
"""

from __future__ import annotations

from pmtrec.study import checks
from pmtrec.study.checks import config_error, split_params
from pmtrec.study.grid import deep_merge, grid_points


class StudyChecks:
    """Checks of a :class:`~pmtrec.study.plan.Study` (reads ``cfg`` and ``entry`` of the study)."""

    def _all_names(self) -> list[str]:
        cfg = self.cfg
        names = [*cfg["methods"], *cfg["ablation"]["variants"], cfg["sensitivity"]["method"],
                 *cfg["sensitivity"]["dim_methods"], *cfg["method_params"], *cfg["tune"]["grids"],
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
        for method, grid in cfg["tune"]["grids"].items():
            e = self.entry[method]
            if e.kind != "method":
                config_error(f"tune.grids.{method}", "only trained methods other than the ablation variants are "
                                                     f"tuned ('{method}' is a {'baseline model' if e.kind == 'model' else 'variant'})")
            self._check_grid(method, grid, f"tune.grids.{method}")
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

    def _check_params_everywhere(self, method: str, params: dict, where: str) -> None:
        """The method built with ``params`` for the tasks of each dataset (e.g. static's weights)."""
        for names in dict.fromkeys(self.task_names(d) for d in self.cfg["datasets"]):
            checks.check_method_params(method, params, where, names)
