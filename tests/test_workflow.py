"""The Snakemake workflow: the DAGs of the shipped configs, config checks, the SLURM profile's
resources, and one real end-to-end run of the CI config (.test/config/config.yaml).

Every test runs the real `snakemake` of this environment on a temporary copy of the workflow,
the configs and the profiles (the library, with its notebooks and template, is imported from the install).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
COPIED = ["workflow", "config", "profiles", ".test"]  # the notebooks and template are package data
NOTEBOOKS = 9

pytestmark = pytest.mark.skipif(not SNAKEMAKE.exists(), reason="snakemake is not installed (pip install -e .[workflow])")


def copy_repo(dst: Path) -> Path:
    for name in COPIED:
        shutil.copytree(ROOT / name, dst / name, ignore=shutil.ignore_patterns("__pycache__", ".snakemake"))
    return dst


def smk(cwd: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMTREC_", "SNAKEMAKE_", "SLURM_"))}
    env["PMTREC_GPUS"] = "0"  # never lock GPU slots from the tests
    return subprocess.run([str(SNAKEMAKE), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def job_stats(out: str) -> Counter:
    """The first 'Job stats' table of a dry run: rule -> number of jobs."""
    lines = out[out.index("Job stats:"):].splitlines()[3:]
    counts = Counter()
    for line in lines:
        parts = line.split()
        if not parts or parts[0] == "total":
            break
        counts[parts[0]] = int(parts[1])
    return counts


def job_blocks(out: str) -> list[dict]:
    """Each job of a dry run (-p): rule, output, resources (dict) and shell command."""
    blocks = []
    for chunk in re.split(r"\n(?=(?:local)?rule \w+:)", out):
        head = re.match(r"(?:local)?rule (\w+):", chunk)
        if not head:
            continue
        block = {"rule": head.group(1), "output": "", "resources": {}, "shell": ""}
        for line in chunk.splitlines():
            line = line.strip()
            if line.startswith("output:"):
                block["output"] = line.split(":", 1)[1].strip()
            elif line.startswith("resources:"):
                for item in line.split(":", 1)[1].split(","):
                    key, _, value = item.strip().partition("=")
                    block["resources"][key] = value
            elif line.startswith("Shell command:"):
                block["shell"] = line.split(":", 1)[1].strip()
        blocks.append(block)
    return blocks


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return copy_repo(tmp_path_factory.mktemp("repo"))


# ---------------------------------------------------------------------------------------- DAGs
def expected_jobs(cfg: dict) -> Counter:
    """The jobs a config asks for, counted independently of the workflow's code."""
    D = list(cfg["datasets"])
    methods, seeds = cfg["methods"], cfg["seeds"]
    abl, sens = cfg.get("ablation") or {}, cfg.get("sensitivity") or {}
    analysis = cfg.get("analysis") or {}
    embedded = [m for m in methods if m != "mostpop"]  # every dataset here has categories to map
    variants = abl.get("variants") or []
    dim, dim_methods = sens.get("dim") or [], sens.get("dim_methods", ["pmtrec"])
    used = set(methods) | ({"pmtrec"} if variants else set()) | (set(dim_methods) if dim else set())

    def size(grid):
        return len(list(itertools.product(*grid.values()))) if grid else 0

    tune = cfg.get("tune") or {}
    if tune.get("budget"):  # every trained method used: the same number of settings (mostpop: untrained)
        tuned = {m: tune["budget"] for m in used if m != "mostpop"}
    else:
        tuned = {m: size(g) for m, g in (tune.get("grids") or {}).items() if size(g) > 1 and m in used}
    tune_seeds = tune.get("seeds", [100])
    sens_points = size(sens.get("grid") or {}) + len(dim) * len(dim_methods)
    # split_seed: run: one prepared folder per seed of any run, besides the fixed one (dataset tables)
    run_seeds = set(seeds) | (set(abl.get("seeds") or seeds) if variants else set()) \
        | (set(sens.get("seeds") or seeds) if sens_points else set()) | (set(tune_seeds) if tuned else set())
    jobs = Counter({
        "download": sum(e["source"] != "synthetic" for e in cfg["datasets"].values()),
        "prepare": len(D),
        "prepare_split": len(D) * len(run_seeds) if cfg.get("split_seed") == "run" else 0,
        "train": len(D) * len(embedded) * len(seeds),
        "train_without_embeddings": len(D) * (len(methods) - len(embedded)) * len(seeds),
        "probe": len(D) * len(embedded) * len(seeds) if analysis.get("probes", True) else 0,
        "embedding_map": len(D) if (analysis.get("map_methods") is None and embedded) or analysis.get("map_methods")
        else 0,
        "tune": len(D) * sum(tuned.values()) * len(tune_seeds),
        "select_setting": len(D) * len(tuned),
        "ablation": len(abl.get("datasets") or D) * len(variants) * len(abl.get("seeds") or seeds),
        "sensitivity": len(sens.get("datasets") or D) * sens_points * len(sens.get("seeds") or seeds),
        "aggregate": 1, "notebook": NOTEBOOKS, "report": 1, "all": 1,
    })
    return +jobs


@pytest.mark.parametrize("configfile", ["config/config.yaml", "config/paper.yaml", ".test/config/config.yaml", ".test/config/small.yaml"])
def test_dry_run_lists_every_job(repo, configfile):
    res = smk(repo, "-n", "all", "--configfile", configfile)
    assert res.returncode == 0, res.stderr[-3000:] + res.stdout[-3000:]
    cfg = yaml.safe_load((repo / configfile).read_text())
    stats = job_stats(res.stdout)
    assert stats == expected_jobs(cfg)
    if configfile == "config/paper.yaml":
        assert stats["train"] == 4 * 20 * 5 and stats["ablation"] == 4 * 7 * 5  # ciao, epinions, amazon-hin, lastfm
        print(f"paper.yaml: {sum(stats.values())} jobs: {dict(stats)}")


def test_default_config_is_loaded_without_configfile(repo):
    res = smk(repo, "-n", "all")
    assert res.returncode == 0, res.stderr[-3000:]
    assert job_stats(res.stdout) == expected_jobs(yaml.safe_load((repo / "config/config.yaml").read_text()))


# ---------------------------------------------------------------------------------- bad configs
def _edit(cfg: dict, path: str, value) -> dict:
    node = cfg
    parts = path.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return cfg


# The planner's checks are unit-tested in tests/test_study_plan.py; these show that a dry run
# fails with that one line, before any job (one case per kind of check).
BAD = [
    ("unknown method", lambda c: c["methods"].append("pmtrek"), "methods[7]", "did you mean 'pmtrec'"),
    ("run setting of the wrong type", lambda c: _edit(c, "run.train.on_nonfinite", 5), "run.train.on_nonfinite",
     "expected one of stop, skip, got 5"),
    ("space value of the wrong type", lambda c: _edit(c, "tune.space.pmtrec", {"tau": [1.0, "x"]}),
     "tune.space.pmtrec.tau", "positive number"),
    ("unknown run key", lambda c: _edit(c, "run.train.epoch", 3), "run.train.epoch", "unknown key"),
]


@pytest.mark.parametrize("name, edit, key, words", BAD, ids=[b[0] for b in BAD])
def test_invalid_config_fails_at_parse_time_naming_the_key(repo, tmp_path, name, edit, key, words):
    cfg = yaml.safe_load((repo / "config/config.yaml").read_text())
    edit(cfg)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    res = smk(repo, "-n", "all", "--configfile", str(bad))
    assert res.returncode != 0
    err = res.stderr + res.stdout
    line = next((ln for ln in err.splitlines() if ln.startswith("config key '")), None)
    assert line is not None, err[-3000:]
    assert line.startswith(f"config key '{key}'"), line
    assert words in line, line
    assert "Building DAG" not in err  # failed while parsing, before any job


# ------------------------------------------------------------------------------------- profiles
def test_slurm_profile_submits_training_to_the_gpu_partition(repo):
    targets = ["results/runs/synthetic-small/pmtrec/seed0.json", "results/runs/synthetic-small/mostpop/seed0.json"]
    # --cores: a dry run otherwise assumes 1 core and caps every job's threads at 1.
    res = smk(repo, "all", "--profile", "profiles/slurm", "-n", "-p", "--cores", "64")
    assert res.returncode == 0, res.stderr[-3000:]
    jobs = {(b["rule"], b["output"].split(",")[0].strip()): b for b in job_blocks(res.stdout)}
    train = jobs[("train", targets[0])]
    assert train["output"].split(",")[1].strip() == targets[0].replace(".json", ".emb.npz")
    r = train["resources"]
    assert r["slurm_partition"] == "gpu" and r["gpu"] == "1" and r["cpus_per_gpu"] == "4"
    assert r["mem_mb"] == "16000" and r["runtime"] == "240"
    assert "--threads 4" in train["shell"] and "--device auto" in train["shell"]
    assert "python -m pmtrec.gpu_slots -- pmtrec train" in train["shell"]
    pop = jobs[("train_without_embeddings", targets[1])]["resources"]
    assert pop["slurm_partition"] == "cpu" and pop["gpu"] == "0"
    prepare = next(b for b in jobs.values() if b["rule"] == "prepare")["resources"]
    assert prepare["slurm_partition"] == "cpu" and prepare["mem_mb"] == "16000" and "gpu" not in prepare
    agg = next(b for b in jobs.values() if b["rule"] == "aggregate")["resources"]
    assert agg["slurm_partition"] == "cpu" and "gpu" not in agg
    for block in jobs.values():  # every other training job: GPU partition, one GPU
        if block["rule"] in ("train", "tune", "ablation", "sensitivity"):
            assert block["resources"]["slurm_partition"] == "gpu" and block["resources"]["gpu"] == "1", block

    # The sbatch command line the SLURM plugin builds from these resources.
    pytest.importorskip("snakemake_executor_plugin_slurm")
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    class Resources(dict):
        __getattr__ = dict.__getitem__

    values = {k: int(v) if v.isdigit() else v for k, v in r.items() if k in
              ("slurm_partition", "gpu", "cpus_per_gpu", "mem_mb", "runtime")}
    job = SimpleNamespace(resources=Resources(values), threads=4)
    call = get_submit_command(job, {"run_uuid": "x", "slurm_logfile": "log", "comment_str": "rule_train",
                                    "account": "", "partition": f"-p {values['slurm_partition']}", "workdir": ""})
    call += set_gres_string(job)
    assert "-p gpu" in call and "--mem 16000" in call and "-t 240" in call
    assert "--cpus-per-gpu=4" in call and "--gpus=1" in call


def test_local_gpu_profile_limits_concurrent_gpu_jobs(repo):
    res = smk(repo, "all", "--profile", "profiles/local-gpu", "-n")
    assert res.returncode == 0, res.stderr[-3000:]
    profile = yaml.safe_load((repo / "profiles/local-gpu/config.yaml").read_text())
    assert profile["resources"]["gpu"] >= 1
    assert not (ROOT / "profiles" / "default").exists()  # Snakemake would load it for every run


# ----------------------------------------------------------------------------------- end to end
def planned(out: str) -> list[tuple[str, str]]:
    return [(b["rule"], b["output"]) for b in job_blocks(out)]


@pytest.mark.slow
def test_ci_config_end_to_end_then_nothing_then_only_the_changed_method(tmp_path):
    repo = copy_repo(tmp_path)
    cfgfile = ".test/config/config.yaml"
    res = smk(repo, "--cores", "2", "all", "--configfile", cfgfile, timeout=600)
    assert res.returncode == 0, res.stderr[-5000:]

    assert (repo / "reports/pmtrec_report.pdf").read_bytes()[:5] == b"%PDF-"
    for name in ("01_datasets", "02_main_comparison", "03_ablation", "04_personalization", "05_training_dynamics",
                 "06_sensitivity", "07_efficiency"):
        assert (repo / f"results/notebooks/{name}.ipynb").is_file()
    import pandas as pd

    tables = repo / "results/tables"
    summary = pd.read_csv(tables / "summary.csv")
    main = summary[(summary["kind"] == "main") & (summary["split"] == "test") & (summary["metric"] == "ndcg@20")]
    assert set(main["method"]) == {"mostpop", "ew", "pmtrec", "static-schedule"} and (main["n"] == 2).all()
    sig = pd.read_csv(tables / "significance.csv")
    assert set(sig["baseline"]) == {"ew"} and (sig["n"] == 2).all()
    assert set(pd.read_csv(tables / "ablation.csv")["method"]) == {"pmtrec", "pmtrec-no-focus", "pmtrec-shuffled"}
    assert set(pd.read_csv(tables / "sensitivity.csv")["variant"]) == {"tau=0.5", "model.dim=8"}
    tuning = pd.read_csv(tables / "tuning.csv")
    assert len(tuning) == 6 and tuning.groupby("method")["selected"].sum().to_dict() == {
        "ew": 1, "pmtrec": 1, "static-schedule": 1}
    protocol = pd.read_csv(tables / "tuning_protocol.csv")
    assert set(protocol.loc[protocol["item"] == "settings", "value"]) == {"2"}  # an equal budget
    assert protocol.query("item == 'budget'")["value"].item() == "2"
    conv = pd.read_csv(tables / "convergence.csv")
    assert set(conv.query("kind == 'main'")["method"]) == {"ew", "pmtrec", "static-schedule"}  # mostpop: untrained
    assert conv["cap_share"].between(0, 1).all()
    headroom = pd.read_csv(tables / "headroom.csv", dtype={"group": str})
    assert "mostpop" not in set(headroom["best_method"]) and "all" in set(headroom["group"])
    claims = json.loads((repo / "results/report/00_claims/section.json").read_text())
    ids = [i.get("id") for i in claims["items"]]
    assert "controls" in ids and "tuning-protocol" in ids
    eff = pd.read_csv(tables / "efficiency.csv")
    assert eff["bench_s"].notna().all() and (eff["bench_s"] > 0).all()
    assert not pd.read_csv(tables / "row_weights.csv").empty and not pd.read_csv(tables / "cosines.csv").empty
    probes = pd.read_csv(tables / "probes.csv")
    assert set(probes["method"]) == {"ew", "pmtrec", "static-schedule"} and set(probes["seed"]) == {0, 1}
    assert set(probes["probe"]) == {"category", "link", "activity"}
    maps = pd.read_csv(tables / "embedding_maps.csv")
    assert set(maps["method"]) == {"ew", "pmtrec", "static-schedule"} and set(maps["kind"]) == {"pca", "tsne"}
    section = json.loads((repo / "results/report/08_embeddings/section.json").read_text())
    assert [i["kind"] for i in section["items"]] == ["table", "figure", "figure", "figure"]
    selected = yaml.safe_load((repo / "results/tune/tiny/pmtrec/selected.yaml").read_text())
    assert selected["train"]["method_params"]["focus_max"] in (0.25, 0.5)

    res = smk(repo, "--cores", "2", "all", "--configfile", cfgfile)
    assert res.returncode == 0 and "Nothing to be done" in res.stdout + res.stderr

    # One method's hyperparameter changes: only that method's jobs (and what reads them) rerun.
    cfg = yaml.safe_load((repo / cfgfile).read_text())
    cfg["method_params"]["pmtrec"]["tau"] = 2.0
    (repo / cfgfile).write_text(yaml.safe_dump(cfg))
    res = smk(repo, "-n", "-p", "all", "--configfile", cfgfile)
    assert res.returncode == 0, res.stderr[-3000:]
    assert job_stats(res.stdout) == Counter({"tune": 2, "select_setting": 1, "train": 2, "ablation": 2,
                                             "probe": 2, "embedding_map": 1,
                                             "aggregate": 1, "notebook": NOTEBOOKS, "report": 1, "all": 1})
    runs = [o for rule, o in planned(res.stdout) if rule in ("train", "tune", "ablation", "sensitivity")]
    assert runs and all("/pmtrec" in o for o in runs), runs

    cfg["method_params"]["pmtrec"]["tau"] = 1.0  # back: nothing to do again
    cfg["method_params"]["ew"] = {"train.lr": 0.02}  # a run-config key for ew alone
    (repo / cfgfile).write_text(yaml.safe_dump(cfg))
    res = smk(repo, "-n", "-p", "all", "--configfile", cfgfile)
    assert res.returncode == 0, res.stderr[-3000:]
    runs = sorted(o.split(",")[0] for rule, o in planned(res.stdout) if rule in ("train", "tune", "ablation", "sensitivity"))
    tuning = [o for o in runs if o.startswith("results/tune/")]  # ew is tuned: its 2 settings on seed 100
    assert len(tuning) == 2 and all(o.startswith("results/tune/tiny/ew/") and o.endswith("/seed100.json") for o in tuning)
    assert [o for o in runs if o not in tuning] == ["results/runs/tiny/ew/seed0.json", "results/runs/tiny/ew/seed1.json",
                                                    "results/sensitivity/tiny/ew/model.dim=8/seed0.json"]
