# Shared helpers: configuration checks, run specifications (the `pmtrec train` arguments of every
# job) and the target lists. Only plain Python here; the rules live in the other .smk files.
#
# How a job's run configuration is built (see config/README.md, "Workflow configuration"):
#   packaged defaults  <-  [--config results/tune/<dataset>/<method>/selected.yaml, tuned methods only]
#                      <-  --set of: config `run`, the dataset's `run`, the method's fixed params,
#                          the job's own keys (grid point, embedding size).
# Every --set string of a job is in that job's `params`, so changing one method's hyperparameter
# changes the params of that method's jobs only (Snakemake's params rerun trigger), and no job
# depends on the config file itself.

import copy
import hashlib
import itertools
import json
import os
import re
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

RESULTS = "results"
RESOURCES = "resources"
LOGS = "logs"
BENCH = "benchmarks/runs"
TABLES = f"{RESULTS}/tables"
REPORT_PDF = "reports/pmtrec_report.pdf"
NOTEBOOKS = ["01_datasets", "02_main_comparison", "03_ablation", "04_personalization",
             "05_training_dynamics", "06_sensitivity", "07_efficiency", "08_embeddings"]
TABLE_NAMES = ["runs", "summary", "significance", "groups", "curves", "row_weights", "cosines",
               "efficiency", "sensitivity", "ablation", "dataset_stats", "tuning", "probes", "embedding_maps"]
# Methods without embedding tables (no probes, no maps, no --embeddings).
NO_EMBEDDINGS = {"mostpop"}

# The ablation switches of PMTRec (pmtrec/methods/pmtrec.py, register_variant): the variants set
# them, so PMTRec's own params and grid must leave them alone (tests check this list against the
# registry).
ABLATION_SWITCHES = {"personalized", "balance", "focus", "align", "progressive"}
VARIANT_BASE = "pmtrec"
# Run-config keys the workflow sets itself; anything else under `run` is passed through.
WORKFLOW_KEYS = {
    "dataset.source": "set by datasets.<name>.source",
    "dataset.mirror": "set by the top-level `mirror` key",
    "train.method": "set by `methods` / `ablation.variants` / `sensitivity`",
    "train.seed": "set by `seeds`",
    "train.method_params": "set by the top-level `method_params` key",
    "train.device": "the workflow always passes --device auto",
    "train.threads": "set by resources.train.threads",
    "train.progress": "the workflow always runs quietly",
}
# Keys that only locate files: not passed to training (moving the mirror reruns nothing).
LOCATION_KEYS = ("dataset.mirror", "dataset.cache")
SOURCES_WITH_FILES = {"ciao", "epinions", "amazon-hin", "lastfm", "amazon", "custom"}
DEFAULT_RESOURCES = {
    "download": {"threads": 1, "mem_mb": 2000, "runtime": 60, "gpu": 0},
    "prepare": {"threads": 1, "mem_mb": 8000, "runtime": 60, "gpu": 0},
    "train": {"threads": 1, "mem_mb": 4000, "runtime": 120, "gpu": 1},
    "aggregate": {"threads": 1, "mem_mb": 4000, "runtime": 30, "gpu": 0},
    "notebook": {"threads": 1, "mem_mb": 4000, "runtime": 30, "gpu": 0},
    "analysis": {"threads": 1, "mem_mb": 4000, "runtime": 30, "gpu": 0},
}


class ConfigKeyError(WorkflowError):
    """A workflow configuration error; the message names the key at fault."""


def config_error(key, message):
    raise ConfigKeyError(f"config key '{key}': {message}")


def _key_path(parts):
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<top level>"


def validate_config(cfg, schema):
    """snakemake's `validate` (fills the schema's defaults), re-raised as one line naming the key."""
    import jsonschema

    try:
        validate(cfg, schema)
    except WorkflowError as exc:
        cause = exc.__context__  # snakemake raises WorkflowError(...) inside `except ValidationError`
        if not isinstance(cause, jsonschema.ValidationError):
            raise
        best = cause
        path = list(best.absolute_path)
        message = best.message
        if best.validator == "additionalProperties":
            extra = re.findall(r"'([^']+)' (?:was|were) unexpected", message)
            found = re.findall(r"'([^']+)'", message.split("(")[-1]) if "(" in message else []
            names = found or extra
            if names:
                path = path + [names[0]]
                message = "unknown key" + (" (allowed: " + ", ".join(sorted(best.schema.get("properties", {})))
                                           + ")" if best.schema.get("properties") else "")
        elif best.validator == "enum":
            message = f"{best.instance!r} is not one of: {', '.join(map(str, best.validator_value))}"
        raise ConfigKeyError(f"config key '{_key_path(path)}': {message}") from None


# ---------------------------------------------------------------------------------------- helpers
def deep_merge(base, update):
    out = copy.deepcopy(base)
    for key, value in (update or {}).items():
        if isinstance(out.get(key), dict) and isinstance(value, dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def flatten(tree, prefix=""):
    """{"a": {"b": 1}} -> [("a.b", 1)] (dict leaves only; lists stay values)."""
    items = []
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            items.extend(flatten(value, dotted + "."))
        else:
            items.append((dotted, value))
    return items


def nest(pairs):
    """[("a.b", 1)] -> {"a": {"b": 1}}."""
    out = {}
    for dotted, value in pairs:
        node = out
        parts = dotted.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def set_args(pairs):
    """--set KEY=VALUE arguments; values as JSON (valid YAML), so strings, lists and dicts survive."""
    return " ".join("--set " + shlex.quote(f"{k}={json.dumps(v, sort_keys=True)}") for k, v in pairs)


def slug(values):
    """A readable, stable path component for a grid point: 'focus_max=0.5,tau=1.0'."""
    def fmt(v):
        if isinstance(v, (list, tuple)):
            return "_".join(fmt(x) for x in v)
        text = v if isinstance(v, str) else json.dumps(v, sort_keys=True, separators=(",", ":"))
        return re.sub(r"[^A-Za-z0-9_.+-]", "_", text)

    return ",".join(f"{k}={fmt(values[k])}" for k in sorted(values)) or "default"


def canon(obj):
    """Dicts with sorted keys, recursively: params that do not change when the YAML is reordered."""
    if isinstance(obj, dict):
        return {k: canon(obj[k]) for k in sorted(obj)}
    if isinstance(obj, (list, tuple)):
        return [canon(v) for v in obj]
    return obj


def grid_points(grid):
    keys = sorted(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def split_params(params):
    """Method hyperparameters (plain keys) and run-config keys (dotted keys)."""
    plain = {k: v for k, v in params.items() if "." not in k}
    dotted = {k: v for k, v in params.items() if "." in k}
    return plain, dotted


# ------------------------------------------------------------------------------------- checks
def check_config(cfg):
    """Everything the schema cannot say; each failure names its key."""
    from pmtrec.config import defaults, merge, parse_override
    from pmtrec.errors import ConfigError

    from pmtrec.config import check_run_config as check_types

    base = defaults()
    datasets = cfg["datasets"]

    def check_run(fragment, where):
        for dotted, _ in flatten(fragment):
            for forbidden, why in WORKFLOW_KEYS.items():
                if dotted == forbidden or dotted.startswith(forbidden + "."):
                    config_error(f"{where}.{forbidden}", why)
        try:
            merged = merge(base, fragment)
        except ConfigError as exc:
            unknown = re.match(r"unknown config key '([^']+)'", str(exc))
            if unknown:
                config_error(f"{where}.{unknown.group(1)}", "unknown key (not a pmtrec run-config key; "
                                                            "see pmtrec/defaults.yaml and config/README.md)")
            config_error(where, str(exc))
        try:  # the types `pmtrec train` itself checks, now rather than in a job
            check_types(merged)
        except ConfigError as exc:
            bad = re.match(r"([\w.-]+): (.*)", str(exc))
            if bad:
                config_error(f"{where}.{bad.group(1)}", bad.group(2))
            config_error(where, str(exc))

    check_run(cfg["run"], "run")
    for name, entry in datasets.items():
        check_run(entry.get("run") or {}, f"datasets.{name}.run")

    def check_dotted(key, where):
        for forbidden, why in WORKFLOW_KEYS.items():
            if key == forbidden or key.startswith(forbidden + "."):
                config_error(f"{where}.{key}", why)
        try:
            merge(base, parse_override(f"{key}=null"))
        except ConfigError:
            config_error(f"{where}.{key}", "unknown run-config key (see pmtrec/defaults.yaml and config/README.md)")

    variants = set(cfg["ablation"]["variants"])
    known_variants = {m for m in _schema_methods() if m.startswith(VARIANT_BASE + "-")}
    for method, params in cfg["method_params"].items():
        if method in known_variants:
            config_error(f"method_params.{method}", f"an ablation variant takes {VARIANT_BASE}'s hyperparameters "
                                                    f"(set them under method_params.{VARIANT_BASE})")
        for key in params:
            if "." in key:
                check_dotted(key, f"method_params.{method}")
            elif method == VARIANT_BASE and key in ABLATION_SWITCHES:
                config_error(f"method_params.{method}.{key}", "an ablation switch: set by the ablation variants")
    for i, method in enumerate(cfg["analysis"]["map_methods"] or []):
        if method in NO_EMBEDDINGS or method not in cfg["methods"]:
            config_error(f"analysis.map_methods[{i}]", f"'{method}' is not a main method with embeddings "
                                                        f"(methods: {', '.join(cfg['methods'])}; not mostpop)")
    for method, grid in cfg["tune"]["grids"].items():
        if method in known_variants or method == "mostpop":
            config_error(f"tune.grids.{method}", "only trained methods other than the ablation variants are tuned")
        for key in grid:
            if "." in key:
                check_dotted(key, f"tune.grids.{method}")
            elif method == VARIANT_BASE and key in ABLATION_SWITCHES:
                config_error(f"tune.grids.{method}.{key}", "an ablation switch: set by the ablation variants")
    for key in cfg["sensitivity"]["grid"]:
        if "." in key:
            check_dotted(key, "sensitivity.grid")
    if cfg["sensitivity"]["method"] == "mostpop" and cfg["sensitivity"]["grid"]:
        config_error("sensitivity.method", "mostpop has no hyperparameters")

    for section in ("ablation", "sensitivity"):
        for i, name in enumerate(cfg[section]["datasets"] or []):
            if name not in datasets:
                config_error(f"{section}.datasets[{i}]", f"unknown dataset '{name}' (configured: "
                                                          f"{', '.join(datasets)})")

    # Local files must exist now, not hours into a run.
    mirror = cfg["mirror"]
    needs_files = any(e["source"] in SOURCES_WITH_FILES for e in datasets.values())
    if mirror is not None and not Path(mirror).expanduser().is_dir():
        config_error("mirror", f"folder not found: {mirror}")
    env_mirror = os.environ.get("PMTREC_MIRROR")
    if mirror is None and env_mirror and needs_files and not Path(env_mirror).expanduser().is_dir():
        raise ConfigKeyError(f"environment variable PMTREC_MIRROR: folder not found: {env_mirror} "
                             "(unset it or set the `mirror` config key)")
    for name, entry in datasets.items():
        merged = deep_merge(cfg["run"], entry.get("run") or {})
        source = entry["source"]
        section = (merged.get("dataset") or {}).get(source) or {}
        for key, value in section.items() if source in ("amazon", "custom") else ():
            if isinstance(value, str) and value and "://" not in value and key not in ("category", "name"):
                if not Path(value).expanduser().is_file():
                    config_error(f"datasets.{name}.run.dataset.{source}.{key}", f"file not found: {value}")
        if source == "custom" and not section.get("interactions"):
            config_error(f"datasets.{name}.run.dataset.custom.interactions", "required for a custom dataset")


def _schema_methods():
    import yaml

    schema = yaml.safe_load((Path(workflow.basedir) / "schemas" / "config.schema.yaml").read_text())
    return schema["$defs"]["method"]["enum"]


# ---------------------------------------------------------------------------------- run specs
class Study:
    """Every job of the study, derived from the validated config."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.datasets = list(cfg["datasets"])
        self.methods = list(cfg["methods"])
        self.seeds = list(cfg["seeds"])
        self.resources = {rule: {**DEFAULT_RESOURCES[rule], **(cfg["resources"].get(rule) or {})}
                          for rule in DEFAULT_RESOURCES}
        self.tune_seed = cfg["tune"]["seed"]
        abl = cfg["ablation"]
        sens = cfg["sensitivity"]
        used = set(self.methods) | ({VARIANT_BASE} if abl["variants"] else set()) \
            | (set(sens["dim_methods"]) if sens["dim"] else set())
        # Tuned: a used method whose grid has more than one point.
        self.grids = {m: g for m, g in cfg["tune"]["grids"].items() if len(grid_points(g)) > 1 and m in used}
        self.points = {}
        for m, g in self.grids.items():
            self.points[m] = {slug(p): canon(p) for p in grid_points(g)}
            if len(self.points[m]) < len(grid_points(g)):
                config_error(f"tune.grids.{m}", "two grid points share a file name; make the values distinct")
        self.variants = list(abl["variants"])
        self.ablation_datasets = abl["datasets"] if abl["datasets"] is not None else self.datasets
        self.ablation_seeds = abl["seeds"] if abl["seeds"] is not None else self.seeds
        self.sens_method = sens["method"]
        self.sens_datasets = sens["datasets"] if sens["datasets"] is not None else self.datasets
        self.sens_seeds = sens["seeds"] if sens["seeds"] is not None else self.seeds
        # (method, point slug) -> {"kind": "grid" | "dim", "values": {...}}
        self.sens_points = {}
        if sens["grid"]:
            for p in grid_points(sens["grid"]):
                self.sens_points[(self.sens_method, slug(p))] = {"kind": "grid", "values": canon(p)}
        for m in sens["dim_methods"]:
            for dim in sens["dim"]:
                self.sens_points[(m, f"model.dim={dim}")] = {"kind": "dim", "values": {"model.dim": dim}}

    # ---- which methods are tuned -----------------------------------------------------------
    def tuned(self, method):
        """The method whose selected setting this method's runs use (variants: pmtrec's), or None."""
        base = VARIANT_BASE if method in self.variants or method.startswith(VARIANT_BASE + "-") else method
        return base if base in self.grids else None

    # ---- argument building -----------------------------------------------------------------
    def dataset_run(self, dataset):
        entry = self.cfg["datasets"][dataset]
        run = deep_merge(self.cfg["run"], entry.get("run") or {})
        run = deep_merge(run, {"dataset": {"source": entry["source"]}})
        return run

    def prepare_pairs(self, dataset):
        run = self.dataset_run(dataset)
        pairs = flatten({k: v for k, v in run.items() if k in ("dataset", "preprocess")})
        return sorted(((k, v) for k, v in pairs if k not in LOCATION_KEYS), key=lambda kv: kv[0])

    def fixed_params(self, method):
        base = VARIANT_BASE if method.startswith(VARIANT_BASE + "-") else method
        return canon(dict(self.cfg["method_params"].get(base) or {}))

    def train_pairs(self, dataset, method, extra=None, use_selected=True):
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
            grid_keys = set(self.grids[tuned])
            # The selected file carries the full method_params and the chosen run-config keys.
            dotted = {k: v for k, v in dotted.items() if k not in grid_keys or k in extra_dotted}
            pairs = [(k, v) for k, v in pairs if k not in grid_keys]
            plain = None
        merged = dict(pairs)
        merged.update(dotted)
        out = sorted(merged.items(), key=lambda kv: kv[0])
        if plain is not None and method != "mostpop":
            out.append(("train.method_params", plain))
        return config_file, out

    def train_params(self, dataset, method, extra=None, use_selected=True):
        config_file, pairs = self.train_pairs(dataset, method, extra, use_selected)
        args = set_args(pairs)
        digest = hashlib.sha1(f"{config_file}|{args}".encode()).hexdigest()[:10]
        return {"config": f"--config {shlex.quote(config_file)}" if config_file else "",
                "sets": args, "tag": digest}

    # ---- targets ---------------------------------------------------------------------------
    def main_runs(self):
        return [run_path(d, m, s) for d in self.datasets for m in self.methods for s in self.seeds]

    # ---- the embedding analysis (pmtrec.analysis) -------------------------------------------
    def embedded_methods(self):
        return [m for m in self.methods if m not in NO_EMBEDDINGS]

    def probe_entries(self):
        """Labels of every probes file, for the aggregate step (the workflow's dataset names)."""
        if not self.cfg["analysis"]["probes"]:
            return []
        return [{"dataset": d, "method": m, "seed": s, "path": probe_path(d, m, s)}
                for d in self.datasets for m in self.embedded_methods() for s in self.seeds]

    def map_methods(self):
        """The methods of the item maps: analysis.map_methods, or the main methods with embeddings."""
        chosen = self.cfg["analysis"]["map_methods"]
        return list(chosen) if chosen is not None else self.embedded_methods()

    def map_datasets(self):
        """Datasets with item categories to colour a map by (read from their source: synthetic,
        every real source but a custom one without item_category)."""
        if not self.map_methods():
            return []
        out = []
        for d in self.datasets:
            run = self.dataset_run(d)
            if run["dataset"]["source"] == "custom" and not ((run["dataset"].get("custom") or {}).get("item_category")):
                continue
            if (run.get("tasks") or {}).get("category") is False:
                continue
            out.append(d)
        return out

    def maps(self):
        return {d: map_path(d) for d in self.map_datasets()}

    def tune_runs(self, dataset=None, method=None):
        out = []
        for d in ([dataset] if dataset else self.datasets):
            for m in ([method] if method else self.grids):
                out += [tune_path(d, m, p) for p in self.points[m]]
        return out

    def ablation_runs(self):
        return [ablation_path(d, v, s) for d in self.ablation_datasets for v in self.variants
                for s in self.ablation_seeds]

    def sensitivity_runs(self):
        return [sensitivity_path(d, m, p, s) for d in self.sens_datasets for (m, p) in self.sens_points
                for s in self.sens_seeds]

    def result_entries(self):
        """Metadata of every result file, for the aggregate step."""
        entries = []
        for d in self.datasets:
            for m in self.methods:
                for s in self.seeds:
                    entries.append({"kind": "main", "dataset": d, "method": m, "seed": s, "setting": "",
                                    "path": run_path(d, m, s), "benchmark": bench_path("train", d, m, f"seed{s}")})
        for d in self.datasets:
            for m in self.grids:
                for p, values in self.points[m].items():
                    entries.append({"kind": "tune", "dataset": d, "method": m, "seed": self.tune_seed,
                                    "setting": p, "values": values, "path": tune_path(d, m, p),
                                    "benchmark": bench_path("tune", d, m, p)})
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


# ------------------------------------------------------------------------------------- paths
def prepared_dir(dataset):
    return f"{RESOURCES}/prepared/{dataset}"


def manifest_path(dataset):
    return f"{RESOURCES}/raw/manifests/{dataset}.json"


def run_path(dataset, method, seed):
    return f"{RESULTS}/runs/{dataset}/{method}/seed{seed}.json"


def emb_path(dataset, method, seed):
    """The run's best-epoch embedding tables (pmtrec.embeddings), beside its result JSON."""
    return f"{RESULTS}/runs/{dataset}/{method}/seed{seed}.emb.npz"


def probe_path(dataset, method, seed):
    return f"{RESULTS}/analysis/probes/{dataset}/{method}/seed{seed}.json"


def map_path(dataset):
    return f"{RESULTS}/analysis/maps/{dataset}.csv"


def tune_path(dataset, method, point):
    return f"{RESULTS}/tune/{dataset}/{method}/{point}.json"


def selected_path(dataset, method):
    return f"{RESULTS}/tune/{dataset}/{method}/selected.yaml"


def ablation_path(dataset, variant, seed):
    return f"{RESULTS}/ablation/{dataset}/{variant}/seed{seed}.json"


def sensitivity_path(dataset, method, point, seed):
    return f"{RESULTS}/sensitivity/{dataset}/{method}/{point}/seed{seed}.json"


def bench_path(rule, *parts):
    return f"{BENCH}/{rule}/{'/'.join(parts)}.tsv"


def checkpoint_path(rule, tag):
    return f"{RESULTS}/checkpoints/{rule}/{tag}.pt"


# ------------------------------------------------------------------------- input / param functions
def download_input(wildcards):
    source = config["datasets"][wildcards.dataset]["source"]
    return [manifest_path(wildcards.dataset)] if source in SOURCES_WITH_FILES else []


def selected_input(dataset, method, use_selected=True):
    tuned = STUDY.tuned(method) if use_selected else None
    return [selected_path(dataset, tuned)] if tuned else []


def train_gpu(wildcards):
    return 0 if wildcards.method in NO_EMBEDDINGS else STUDY.resources["train"]["gpu"]


def sens_point(wildcards):
    try:
        return STUDY.sens_points[(wildcards.method, wildcards.point)]
    except KeyError:
        raise WorkflowError(f"sensitivity: no point '{wildcards.point}' for method '{wildcards.method}' "
                            "in the config (sensitivity.grid / sensitivity.dim)") from None


def sens_params(wildcards):
    point = sens_point(wildcards)
    return STUDY.train_params(wildcards.dataset, wildcards.method, point["values"],
                              use_selected=point["kind"] == "dim")
