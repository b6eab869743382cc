"""The study planner: every job of a workflow config, its run arguments and its labels.

``Study(config)`` validates the config (schema defaults filled in by the caller or by
:func:`load_study`; every other check in :mod:`pmtrec.study.checks`) and answers what the
Snakemake rules ask: which runs exist, which files each job reads and writes, and the
``pmtrec train`` arguments of each job. How a job's run configuration is built (config/README.md,
"Workflow configuration"):

    packaged defaults  <-  [--config results/tune/<dataset>/<method>/selected.yaml, tuned methods only]
                       <-  --set of: config `plugins` and `run`, the dataset's `run`, the method's
                           fixed params, the job's own keys (grid point, embedding size).

Every --set string of a job is in that job's Snakemake `params`, so changing one method's
hyperparameter changes the params of that method's jobs only (the params rerun trigger), and no
job depends on the config file itself.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from typing import Any

from pmtrec.study import checks
from pmtrec.study.checks import flatten, split_params
from pmtrec.study.grid import canon, deep_merge, grid_points, set_args, slug  # noqa: F401
from pmtrec.study.tuning_plan import tuning_plan
from pmtrec.study.validate import StudyChecks
from pmtrec.study.paths import (ablation_path, bench_path, map_path, prepared_dir, probe_path, run_path,
                                selected_path, sensitivity_path, tune_path)

# Keys that only locate files: not passed to training (moving the mirror reruns nothing).
LOCATION_KEYS = ("dataset.mirror", "dataset.cache", "dataset.manifest")
DEFAULT_RESOURCES = {
    "download": {"threads": 1, "mem_mb": 2000, "runtime": 60, "gpu": 0},
    "prepare": {"threads": 1, "mem_mb": 8000, "runtime": 60, "gpu": 0},
    "train": {"threads": 1, "mem_mb": 4000, "runtime": 120, "gpu": 1},
    "aggregate": {"threads": 1, "mem_mb": 4000, "runtime": 30, "gpu": 0},
    "notebook": {"threads": 1, "mem_mb": 4000, "runtime": 30, "gpu": 0},
    "analysis": {"threads": 1, "mem_mb": 4000, "runtime": 30, "gpu": 0},
}


def load_study(config: dict, schema_path) -> "Study":
    """Schema (defaults filled in, in place), plugins, every check, then the plan.

    Scientific notation is read as numbers first (``lr: 1e-3``: Snakemake's YAML 1.1 loader, and
    its ``--config``, leave it a string)."""
    from pmtrec.config import as_floats

    converted = as_floats(config)
    config.clear()
    config.update(converted)
    checks.validate_schema(config, schema_path)
    return Study(config)


# ---- the plan ------------------------------------------------------------------------------------
class Study(StudyChecks):
    """Every job of the study, derived from the validated config (checked here, at construction)."""

    def __init__(self, cfg: dict) -> None:
        from pmtrec.methods import entry
        from pmtrec.plugins import load_plugins

        self.cfg = cfg
        self.plugins = load_plugins(cfg.get("plugins") or [], "plugins")
        self._check_names()
        self.datasets = list(cfg["datasets"])
        self.methods = list(cfg["methods"])
        self.seeds = list(cfg["seeds"])
        self.entry = {m: entry(m) for m in self._all_names()}
        self.resources = {rule: {**DEFAULT_RESOURCES[rule], **(cfg["resources"].get(rule) or {})}
                          for rule in DEFAULT_RESOURCES}
        abl, sens = cfg["ablation"], cfg["sensitivity"]
        self.used = list(dict.fromkeys([*self.methods, *(self.entry[v].base for v in abl["variants"]),
                                        *(sens["dim_methods"] if sens["dim"] else [])]))
        self.split_seed = cfg["split_seed"]
        # Tuning (pmtrec.study.tuning_plan): method -> its space, and -> {setting name: values}.
        self.tune_seeds = list(cfg["tune"]["seeds"])
        self.spaces, self.points = tuning_plan(cfg["tune"], self.used, entry)
        self.variants = list(abl["variants"])
        self.ablation_datasets = abl["datasets"] if abl["datasets"] is not None else self.datasets
        self.ablation_seeds = abl["seeds"] if abl["seeds"] is not None else self.seeds
        self.sens_method = sens["method"]
        self.sens_datasets = sens["datasets"] if sens["datasets"] is not None else self.datasets
        self.sens_seeds = sens["seeds"] if sens["seeds"] is not None else self.seeds
        # (method, point slug) -> {"kind": "grid" | "dim", "values": {...}}
        self.sens_points: dict[tuple[str, str], dict] = {}
        if sens["grid"]:
            for p in grid_points(sens["grid"]):
                self.sens_points[(self.sens_method, slug(p))] = {"kind": "grid", "values": canon(p)}
        for m in sens["dim_methods"]:
            for dim in sens["dim"]:
                self.sens_points[(m, f"model.dim={dim}")] = {"kind": "dim", "values": {"model.dim": dim}}
        self._check_values()

    # ---- which methods run on which dataset ----------------------------------------------------
    def methods_of(self, dataset: str) -> list[str]:
        """The main methods of one dataset: its `methods` entry (a subset of `methods`), else all."""
        chosen = self.cfg["datasets"][dataset].get("methods")
        return [m for m in self.methods if m in chosen] if chosen else list(self.methods)

    def used_on(self, dataset: str) -> list[str]:
        """Every method whose runs on ``dataset`` need a tuned setting: its main methods, the ablation
        variants' base and the embedding-size sweep's methods where those stages cover it."""
        used = list(self.methods_of(dataset))
        if dataset in self.ablation_datasets:
            used += [self.entry[v].base for v in self.variants]
        if dataset in self.sens_datasets and self.cfg["sensitivity"]["dim"]:
            used += list(self.cfg["sensitivity"]["dim_methods"])
        return list(dict.fromkeys(used))

    def tuned_on(self, dataset: str) -> list[str]:
        """The tuned methods (tune.space / tune.grids) that have tuning runs on ``dataset``."""
        used = set(self.used_on(dataset))
        return [m for m in self.spaces if m in used]

    # ---- checks ------------------------------------------------------------------------------

    def _entry(self, name: str):
        from pmtrec.methods import entry

        return self.entry.get(name) or entry(name)

    def task_names(self, dataset: str) -> tuple[str, ...]:
        """The tasks a dataset's runs will have, from its source's declared relations and `tasks`."""
        from pmtrec.data.sources import source_info

        run = self.dataset_run(dataset)
        info = source_info(run["dataset"]["source"])
        section = run["dataset"].get(info.name) or {}
        tasks = run.get("tasks") or {}
        names = ["rec"]
        for relation in ("social", "category", "coview"):
            if relation not in info.relations or tasks.get(relation) is False:
                continue
            key = info.relation_key(relation)
            if key and not section.get(key):
                continue  # a file-based source without that file
            names.append(relation)
        return tuple(names)

    # ---- which methods are tuned ---------------------------------------------------------------
    def base_of(self, method: str) -> str:
        e = self._entry(method)
        return e.base if e.kind == "variant" else method

    def tuned(self, method: str) -> str | None:
        """The method whose selected setting this method's runs use (variants: their base's), or None."""
        base = self.base_of(method)
        return base if base in self.spaces else None

    def trains(self, method: str) -> bool:
        return self._entry(method).trains

    # ---- argument building ---------------------------------------------------------------------
    def dataset_run(self, dataset: str) -> dict:
        entry = self.cfg["datasets"][dataset]
        run = deep_merge(self.cfg["run"], entry.get("run") or {})
        run = deep_merge(run, {"dataset": {"source": entry["source"]}})
        if self.plugins:
            run["plugins"] = list(self.plugins)
        return run

    def prepare_pairs(self, dataset: str, split: int | None = None) -> list[tuple[str, Any]]:
        """`pmtrec prepare --set` pairs of a dataset; ``split``: the split seed (preprocess.seed)."""
        run = self.dataset_run(dataset)
        if split is not None:
            run = deep_merge(run, {"preprocess": {"seed": int(split)}})
        pairs = flatten({k: v for k, v in run.items() if k in ("dataset", "preprocess", "plugins")})
        return sorted(((k, v) for k, v in pairs if k not in LOCATION_KEYS), key=lambda kv: kv[0])

    def reads_files(self, dataset: str) -> bool:
        """The dataset's source reads raw files (a download job runs first)."""
        from pmtrec.data.sources import source_info

        return source_info(self.cfg["datasets"][dataset]["source"]).raw_files

    def local_files(self, dataset: str) -> list[str]:
        """Local files named by the dataset's source keys (custom CSVs, amazon paths; URLs excluded)."""
        from pmtrec.data.sources import source_info

        run = self.dataset_run(dataset)
        info = source_info(run["dataset"]["source"])
        section = run["dataset"].get(info.name) or {}
        return [str(section[k]) for k in info.path_keys
                if isinstance(section.get(k), str) and section[k] and "://" not in section[k]]

    def fixed_params(self, method: str) -> dict:
        return canon(dict(self.cfg["method_params"].get(self.base_of(method)) or {}))

    def train_pairs(self, dataset: str, method: str, extra: dict | None = None, use_selected: bool = True):
        """(config file or None, --set pairs) of one training job."""
        run = self.dataset_run(dataset)
        pairs = [(k, v) for k, v in flatten(run) if k not in LOCATION_KEYS]
        plain, dotted = split_params(self.fixed_params(method))
        extra_plain, extra_dotted = split_params(extra or {})
        plain.update(extra_plain)
        dotted.update(extra_dotted)
        tuned = self.tuned(method) if use_selected else None
        config_file = None
        if tuned is not None:
            config_file = selected_path(dataset, tuned)
            grid_keys = set(self.spaces[tuned])
            # The selected file carries the full method_params and the chosen run-config keys.
            dotted = {k: v for k, v in dotted.items() if k not in grid_keys or k in extra_dotted}
            pairs = [(k, v) for k, v in pairs if k not in grid_keys]
            plain = None
        merged = dict(pairs)
        merged.update(dotted)
        out = sorted(merged.items(), key=lambda kv: kv[0])
        if plain is not None and self.trains(method):
            out.append(("train.method_params", plain))
        return config_file, out

    def train_params(self, dataset: str, method: str, extra: dict | None = None, use_selected: bool = True) -> dict:
        config_file, pairs = self.train_pairs(dataset, method, extra, use_selected)
        args = set_args(pairs)
        digest = hashlib.sha1(f"{config_file}|{args}".encode()).hexdigest()[:10]
        return {"config": f"--config {shlex.quote(config_file)}" if config_file else "",
                "sets": args, "tag": digest}

    def labels(self, stage: str, dataset: str, method: str, seed=None, point: str | None = None) -> str:
        """``--label`` arguments of a job: what its result is in the study (read back by aggregate)."""
        labels: dict[str, Any] = {"dataset": dataset, "stage": stage}
        if stage == "tune":
            labels.update(setting=point, values=self.points[method][point])
            labels["benchmark"] = bench_path("tune", dataset, method, point, f"seed{seed}")
        elif stage == "sensitivity":
            sp = self.sens_point(method, point)
            labels.update(setting=point, values=sp["values"], sweep=sp["kind"])
            labels["benchmark"] = bench_path("sensitivity", dataset, method, point, f"seed{seed}")
        else:
            labels["benchmark"] = bench_path("train" if stage == "main" else stage, dataset, method, f"seed{seed}")
        if seed is not None:
            labels["seed"] = int(seed)
        return " ".join("--label " + shlex.quote(f"{k}={json.dumps(v, sort_keys=True)}") for k, v in labels.items())

    # ---- targets -------------------------------------------------------------------------------
    def main_runs(self) -> list[str]:
        return [run_path(d, m, s) for d in self.datasets for m in self.methods_of(d) for s in self.seeds]

    def embedded_methods(self, dataset: str | None = None) -> list[str]:
        """Main methods (of ``dataset``, or of the study) with embedding tables (not the baseline models)."""
        return [m for m in (self.methods_of(dataset) if dataset else self.methods) if self.trains(m)]

    def untrained_methods(self) -> list[str]:
        return [m for m in self._all_names() if not self.trains(m)]

    def probe_entries(self) -> list[dict]:
        """Labels of every probes file, for the aggregate step (the workflow's dataset names)."""
        if not self.cfg["analysis"]["probes"]:
            return []
        return [{"dataset": d, "method": m, "seed": s, "path": probe_path(d, m, s)}
                for d in self.datasets for m in self.embedded_methods(d) for s in self.seeds]

    def map_methods(self, dataset: str | None = None) -> list[str]:
        """The methods of the item maps (of ``dataset``): analysis.map_methods, or the main methods
        with embeddings; on one dataset, those of them that run there."""
        chosen = self.cfg["analysis"]["map_methods"]
        methods = list(chosen) if chosen is not None else self.embedded_methods()
        return [m for m in methods if m in self.methods_of(dataset)] if dataset else methods

    def map_datasets(self) -> list[str]:
        """Datasets with item categories to colour a map by (a custom dataset only with item_category)."""
        from pmtrec.data.sources import source_info

        out = []
        for d in self.datasets:
            if not self.map_methods(d):
                continue
            run = self.dataset_run(d)
            source = run["dataset"]["source"]
            if "category" not in source_info(source).relations:
                continue
            key = source_info(source).relation_key("category")
            if key and not ((run["dataset"].get(source) or {}).get(key)):
                continue  # a file-based source without its category file
            if (run.get("tasks") or {}).get("category") is False:
                continue
            out.append(d)
        return out

    def maps(self) -> dict[str, str]:
        return {d: map_path(d) for d in self.map_datasets()}

    def tune_runs(self, dataset: str | None = None, method: str | None = None) -> list[str]:
        """Every tuning run: dataset x tuned method x setting x tuning seed."""
        return [tune_path(d, m, p, s) for d in ([dataset] if dataset else self.datasets)
                for m in ([method] if method else self.tuned_on(d)) for p in self.points[m] for s in self.tune_seeds]

    def tune_points(self, dataset: str, method: str) -> dict[str, dict]:
        """Tuning result file -> its setting's values (what select_setting reads)."""
        return {tune_path(dataset, method, p, s): v for p, v in self.points[method].items() for s in self.tune_seeds}

    # ---- data splits ---------------------------------------------------------------------------
    def split_of(self, seed) -> int | None:
        """The split seed of a run on ``seed`` (None: the fixed split of the config)."""
        return int(seed) if self.split_seed == "run" else None

    def data_dir(self, dataset: str, seed) -> str:
        """The prepared folder a run of ``dataset`` on ``seed`` reads."""
        return prepared_dir(dataset, self.split_of(seed))

    def tuning_protocol(self) -> dict:
        """What the report lists: budget, seeds, sampler, each tuned method's space and settings,
        the split protocol and the disclosed development-time tuning."""
        tune = self.cfg["tune"]
        return {"budget": tune["budget"], "seeds": list(self.tune_seeds), "metric": tune["metric"],
                "sampler": tune["sampler"], "sampler_seed": tune["sampler_seed"], "draws": tune["draws"],
                "split_seed": self.split_seed,
                "spaces": canon(self.spaces), "settings": {m: len(p) for m, p in self.points.items()},
                "development": list(tune["development"])}

    def ablation_runs(self) -> list[str]:
        return [ablation_path(d, v, s) for d in self.ablation_datasets for v in self.variants
                for s in self.ablation_seeds]

    def sensitivity_runs(self) -> list[str]:
        return [sensitivity_path(d, m, p, s) for d in self.sens_datasets for (m, p) in self.sens_points
                for s in self.sens_seeds]

    def sens_point(self, method: str, point: str) -> dict:
        from pmtrec.errors import ConfigError

        try:
            return self.sens_points[(method, point)]
        except KeyError:
            raise ConfigError(f"sensitivity: no point '{point}' for method '{method}' in the config "
                              "(sensitivity.grid / sensitivity.dim)") from None

    def result_entries(self) -> list[dict]:
        """Metadata of every result file, for the aggregate step."""
        entries = []
        for d in self.datasets:
            for m in self.methods_of(d):
                for s in self.seeds:
                    entries.append({"kind": "main", "dataset": d, "method": m, "seed": s, "setting": "",
                                    "path": run_path(d, m, s), "benchmark": bench_path("train", d, m, f"seed{s}")})
        for d in self.datasets:
            for m in self.tuned_on(d):
                for p, values in self.points[m].items():
                    for s in self.tune_seeds:
                        entries.append({"kind": "tune", "dataset": d, "method": m, "seed": s,
                                        "setting": p, "values": values, "path": tune_path(d, m, p, s),
                                        "benchmark": bench_path("tune", d, m, p, f"seed{s}")})
        for d in self.ablation_datasets:
            for v in self.variants:
                for s in self.ablation_seeds:
                    entries.append({"kind": "ablation", "dataset": d, "method": v, "seed": s, "setting": "",
                                    "path": ablation_path(d, v, s),
                                    "benchmark": bench_path("ablation", d, v, f"seed{s}")})
        for d in self.sens_datasets:
            for (m, p), point in self.sens_points.items():
                for s in self.sens_seeds:
                    entries.append({"kind": "sensitivity", "dataset": d, "method": m, "seed": s, "setting": p,
                                    "sweep": point["kind"], "values": point["values"],
                                    "path": sensitivity_path(d, m, p, s),
                                    "benchmark": bench_path("sensitivity", d, m, p, f"seed{s}")})
        return entries
