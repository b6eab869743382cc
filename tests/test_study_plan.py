"""The study planner (pmtrec.study), without Snakemake: jobs, run arguments and every parse-time check."""

from __future__ import annotations

import copy
import json
import shlex
import sys
from pathlib import Path

import pytest
import yaml

from pmtrec.config import load_config
from pmtrec.methods import available, entry
from pmtrec.study import Study, StudyConfigError, load_study
from pmtrec.study.grid import grid_points

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow/schemas/config.schema.yaml"
CONFIGS = ["config/config.yaml", "config/paper.yaml", "config/reference.yaml", ".test/config/config.yaml"]


def raw(name: str = ".test/config/config.yaml") -> dict:
    return yaml.safe_load((ROOT / name).read_text())


def plan(cfg: dict) -> Study:
    return load_study(copy.deepcopy(cfg), SCHEMA)


def sets_of(args: str) -> dict:
    """The --set KEY=VALUE pairs of a job's arguments, values parsed."""
    words = shlex.split(args)
    return {k: json.loads(v) for k, v in (w.split("=", 1) for w in words[1::2])}


@pytest.mark.parametrize("name", CONFIGS)
def test_every_shipped_config_plans_the_expected_runs(name):
    cfg = raw(name)
    if name in ("config/paper.yaml", "config/reference.yaml"):
        cfg["mirror"] = None  # the mirror folder is checked elsewhere
    study = plan(cfg)
    D, S = len(cfg["datasets"]), len(cfg["seeds"])
    of = {d: (e.get("methods") or cfg["methods"]) for d, e in cfg["datasets"].items()}
    assert len(study.main_runs()) == sum(len(m) for m in of.values()) * S
    tune = cfg.get("tune") or {}
    if tune.get("budget"):  # every trained method a dataset uses: budget settings x tuning seeds
        abl, sens = cfg.get("ablation") or {}, cfg.get("sensitivity") or {}
        n = 0
        for d in cfg["datasets"]:
            used = set(of[d])
            if abl.get("datasets") is None or d in abl["datasets"]:
                used.add("pmtrec")
            if sens.get("datasets") is None or d in sens["datasets"]:
                used |= set(sens.get("dim_methods", []))
            n += len([m for m in used if entry(m).kind == "method"])
        assert len(study.tune_runs()) == n * tune["budget"] * len(tune["seeds"])
    else:
        grids = {m: g for m, g in tune.get("grids", {}).items() if len(grid_points(g)) > 1}
        assert len(study.tune_runs()) == D * sum(len(grid_points(g)) for g in grids.values())
    models = [m for m in cfg["methods"] if not entry(m).trains]
    assert study.embedded_methods() == [m for m in cfg["methods"] if m not in models]
    assert len(study.result_entries()) == len(study.main_runs()) + len(study.tune_runs()) \
        + len(study.ablation_runs()) + len(study.sensitivity_runs())


def test_job_arguments_are_those_pmtrec_train_accepts():
    study = plan(raw())
    args = study.train_params("tiny", "ew", use_selected=False)  # a tuning run's base arguments
    pairs = sets_of(args["sets"])
    assert args["config"] == "" and pairs["train.method_params"] == {} and pairs["train.epochs"] == 2
    cfg = load_config(overrides=[f"{k}={json.dumps(v)}" for k, v in pairs.items()])
    assert cfg["dataset"]["synthetic"]["size"] == "tiny" and cfg["train"]["lr"] == 0.01
    # a tuned method reads its selected setting; its variants too; a baseline model takes no params
    tuned = study.train_params("tiny", "pmtrec")
    assert tuned["config"] == "--config results/tune/tiny/pmtrec/selected.yaml"
    assert "train.method_params" not in sets_of(tuned["sets"])
    assert study.train_params("tiny", "pmtrec-no-focus")["config"] == tuned["config"]
    assert "train.method_params" not in sets_of(study.train_params("tiny", "mostpop")["sets"])
    assert study.untrained_methods() == ["mostpop"]


def test_job_arguments_do_not_change_when_the_yaml_is_reordered():
    cfg = raw()
    shuffled = {k: cfg[k] for k in reversed(list(cfg))}
    shuffled["method_params"] = {"pmtrec": dict(reversed(list(cfg["method_params"]["pmtrec"].items())))}
    a, b = plan(cfg), plan(shuffled)
    for m in ("ew", "pmtrec", "mostpop"):
        assert a.train_params("tiny", m) == b.train_params("tiny", m)
    assert a.result_entries() == b.result_entries()


def _edit(cfg, path, value):
    node = cfg
    *parents, leaf = path.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    return cfg


BAD = [
    ("unknown method", lambda c: c["methods"].append("pmtrek"), "methods[4]", "did you mean 'pmtrec'"),
    ("unknown variant", lambda c: _edit(c, "ablation.variants", ["ew"]), "ablation.variants[0]", "not an ablation"),
    ("unknown source", lambda c: _edit(c, "datasets.tiny.source", "movielens"), "datasets.tiny.source",
     "unknown source 'movielens'"),
    ("unknown dataset", lambda c: _edit(c, "ablation.datasets", ["ciao"]), "ablation.datasets[0]", "unknown dataset"),
    ("negative epochs", lambda c: _edit(c, "run.train.epochs", -5), "run.train.epochs", "minimum"),
    ("unknown run key", lambda c: _edit(c, "run.train.epoch", 3), "run.train.epoch", "unknown key"),
    ("workflow-owned key", lambda c: _edit(c, "run.train.seed", 3), "run.train.seed", "seeds"),
    ("run setting of the wrong type", lambda c: _edit(c, "run.train.on_nonfinite", 5), "run.train.on_nonfinite",
     "expected one of stop, skip, got 5"),
    ("download setting of the wrong type", lambda c: _edit(c, "run.dataset.download.retries", "many"),
     "run.dataset.download.retries", "expected a non-negative integer, got 'many'"),
    ("dataset run setting", lambda c: _edit(c, "datasets.tiny.run.model.init_std", "big"),
     "datasets.tiny.run.model.init_std", "number"),
    ("method parameter typo", lambda c: _edit(c, "method_params.pmtrec.tua", 1.0), "method_params.pmtrec.tua",
     "did you mean 'tau'"),
    ("method parameter of the wrong type", lambda c: _edit(c, "method_params.pmtrec.tau", "big"),
     "method_params.pmtrec.tau", "positive number"),
    ("parameters of a baseline model", lambda c: _edit(c, "method_params.mostpop", {"k": 1}),
     "method_params.mostpop", "baseline model"),
    ("ablation switch as a param", lambda c: _edit(c, "method_params.pmtrec.focus", False),
     "method_params.pmtrec.focus", "ablation"),
    ("space key typo", lambda c: _edit(c, "tune.space.pmtrec", {"focus_mx": [0.1, 0.2]}), "tune.space.pmtrec.focus_mx",
     "did you mean 'focus_max'"),
    ("space value of the wrong type", lambda c: _edit(c, "tune.space.pmtrec", {"tau": [1.0, "x"]}),
     "tune.space.pmtrec.tau", "positive number"),
    ("space run key typo", lambda c: _edit(c, "tune.space.ew", {"train.lrr": [0.1, 0.2]}), "tune.space.ew.train.lrr",
     "unknown run-config key"),
    ("space run value of the wrong type", lambda c: _edit(c, "tune.space.ew", {"train.lr": [0.1, "fast"]}),
     "tune.space.ew.train.lr", "number"),
    ("legacy grid key typo", lambda c: _edit(c, "tune", {"grids": {"pmtrec": {"focus_mx": [0.1, 0.2]}}}),
     "tune.grids.pmtrec.focus_mx", "did you mean 'focus_max'"),
    ("sensitivity grid value", lambda c: _edit(c, "sensitivity.grid", {"focus_max": [2.0]}),
     "sensitivity.grid.focus_max", "[0, 1]"),
    ("tuned baseline model", lambda c: _edit(c, "tune.space.mostpop", {"train.l2": [0.1, 0.2]}),
     "tune.space.mostpop", "baseline model"),
    ("map method without embeddings", lambda c: _edit(c, "analysis.map_methods", ["ew", "mostpop"]),
     "analysis.map_methods[1]", "not a main method with embeddings"),
    ("missing mirror", lambda c: _edit(c, "mirror", "/nonexistent/pmtrec-mirror"), "mirror", "folder not found"),
    ("missing custom file", lambda c: _edit(c, "datasets.mine", {"source": "custom", "run": {"dataset": {"custom": {
        "interactions": "/nonexistent/x.csv"}}}}), "datasets.mine.run.dataset.custom.interactions", "file not found"),
    ("custom without interactions", lambda c: _edit(c, "datasets.mine", {"source": "custom"}),
     "datasets.mine.run.dataset.custom.interactions", "required"),
    ("custom key typo", lambda c: _edit(c, "datasets.mine", {"source": "custom", "run": {"dataset": {"custom": {
        "socal": "x.csv"}}}}), "datasets.mine.run.dataset.custom.socal", "unknown key"),
    ("unknown plugin", lambda c: _edit(c, "plugins", ["no_such_plugin_module"]), "plugins", "cannot import"),
    ("dataset method not in methods", lambda c: _edit(c, "datasets.tiny.methods", ["pmtrec", "uw"]),
     "datasets.tiny.methods[1]", "'uw' is not in `methods`"),
    ("dataset methods without the reference", lambda c: _edit(c, "datasets.tiny.methods", ["ew"]),
     "datasets.tiny.methods", "lacks significance.reference 'pmtrec'"),
]


@pytest.mark.parametrize("name, edit, key, words", BAD, ids=[b[0] for b in BAD])
def test_a_bad_config_fails_with_one_line_naming_the_key(name, edit, key, words):
    cfg = raw()
    edit(cfg)
    with pytest.raises(Exception) as info:
        plan(cfg)
    line = str(info.value)
    assert "\n" not in line
    assert line.startswith(f"config key '{key}'") or (key == "plugins" and line.startswith("plugins:")), line
    assert words in line, line


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    """tests/plugin_example.py (the method `halfaux`, the source `toy`), imported as a plugin."""
    name = f"plan_plugin_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text((Path(__file__).parent / "plugin_example.py").read_text())
    monkeypatch.chdir(tmp_path)  # plugins are found on the working directory
    yield name
    from pmtrec import plugins
    from pmtrec.data import sources
    from pmtrec.methods.registry import unregister

    unregister("halfaux")
    for table in (sources.SOURCES, sources.SOURCE_INFO, plugins.SOURCE_OPTIONS):
        table.pop("toy", None)
    sys.modules.pop(name, None)
    plugins._LOADED.discard(name)


def test_a_plugin_method_is_planned_and_checked_like_a_built_in(plugin_dir):
    cfg = raw()
    cfg["plugins"] = [plugin_dir]
    cfg["methods"].append("halfaux")
    cfg["tune"]["space"]["halfaux"] = {"share": [0.25, 0.75]}
    study = plan(cfg)
    assert "halfaux" in available() and entry("halfaux").label == "Half-aux"
    assert sets_of(study.train_params("tiny", "mostpop")["sets"])["plugins"] == [plugin_dir]
    assert len(study.tune_runs(method="halfaux")) == 2
    cfg["tune"]["space"]["halfaux"] = {"share": [0.25, 3.0]}
    with pytest.raises(StudyConfigError, match=r"config key 'tune.space.halfaux.share': share must be in"):
        plan(cfg)


def test_a_dataset_methods_list_restricts_its_main_tuning_and_map_runs():
    cfg = raw()
    cfg["datasets"]["small"] = {"source": "synthetic", "methods": ["ew", "pmtrec"],
                                "run": {"dataset": {"synthetic": {"size": "tiny", "seed": 1}}}}
    cfg["ablation"]["datasets"] = ["tiny"]
    cfg["sensitivity"]["datasets"] = ["tiny"]
    study = plan(cfg)
    assert study.methods_of("tiny") == cfg["methods"]
    assert study.methods_of("small") == ["ew", "pmtrec"]
    runs = study.main_runs()
    assert len(runs) == (4 + 2) * len(cfg["seeds"])
    assert not [r for r in runs if "/small/" in r and ("mostpop" in r or "static-schedule" in r)]
    # Tuning on `small` only for its own main methods (no ablation or sweep there); `tiny` tunes
    # static-schedule too.
    tuned_small = {Path(r).parts[-3] for r in study.tune_runs("small")}
    tuned_tiny = {Path(r).parts[-3] for r in study.tune_runs("tiny")}
    assert tuned_small == {"ew", "pmtrec"}, tuned_small
    assert tuned_tiny == {"ew", "pmtrec", "static-schedule"}, tuned_tiny
    assert study.tuned_on("small") == ["ew", "pmtrec"]
    assert {e["method"] for e in study.result_entries() if e["dataset"] == "small"} == {"ew", "pmtrec"}
    assert {e["method"] for e in study.probe_entries() if e["dataset"] == "small"} == {"ew", "pmtrec"}
    assert study.map_methods("small") == ["ew", "pmtrec"]
    assert len(study.result_entries()) == len(runs) + len(study.tune_runs()) + len(study.ablation_runs()) \
        + len(study.sensitivity_runs())
    # Ablation on `small` too: it now tunes the variants' base (pmtrec, already there) only.
    cfg["ablation"]["datasets"] = None
    assert plan(cfg).tuned_on("small") == ["ew", "pmtrec"]
