"""Plugins: a method and a dataset source written outside the package, usable by name everywhere.

One module next to the config (``plugins: [module]``) registers both; nothing of the project
changes. It trains from the CLI, and runs through the workflow (dry run and a real tiny run)
into the tables and the PDF report.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"

# The plugin module: tests/plugin_example.py, copied next to each test's config as my_plugin.py.
PLUGIN = (Path(__file__).parent / "plugin_example.py").read_text()


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMTREC_", "SNAKEMAKE_", "SLURM_"))}
    env["PMTREC_GPUS"] = "0"
    return env


@pytest.fixture
def project(tmp_path) -> Path:
    (tmp_path / "my_plugin.py").write_text(PLUGIN)
    return tmp_path


def test_a_plugin_method_and_source_train_from_the_cli(project):
    cmd = [sys.executable, "-m", "pmtrec", "train", "--set", "plugins=[my_plugin]", "--set", "dataset.source=toy",
           "--set", "dataset.toy.users=90", "--method", "halfaux", "--set", "train.method_params.share=0.25",
           "--epochs", "2", "--threads", "1", "-q", "--out", "r.json"]
    res = subprocess.run(cmd, cwd=project, env=_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    r = json.loads((project / "r.json").read_text())
    assert r["method"] == "halfaux" and r["tasks"] == ["rec", "social"] and r["epochs_run"] == 2
    assert r["config"]["dataset"]["toy"]["users"] == 90
    assert all(e["weight"] == {"rec": 1.0, "social": 0.25} for e in r["curves"])
    listed = subprocess.run([sys.executable, "-m", "pmtrec", "methods", "--json", "--plugins", "my_plugin"],
                            cwd=project, env=_env(), capture_output=True, text=True, timeout=120)
    entry = next(e for e in json.loads(listed.stdout) if e["name"] == "halfaux")
    assert entry["label"] == "Half-aux" and entry["tunable"] == {"share": [0.0, 1.0]}
    # without the plugin the name is unknown, with a one-line error
    bare = [sys.executable, "-m", "pmtrec", "train", "--set", "dataset.source=toy", "--epochs", "1"]
    res = subprocess.run(bare, cwd=project, env=_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert "dataset.source: unknown source 'toy'" in res.stderr and "plugins" in res.stderr


@pytest.mark.skipif(not SNAKEMAKE.exists(), reason="snakemake is not installed (pip install -e .[workflow])")
def test_a_plugin_runs_through_the_workflow_into_the_tables_and_the_report(project):
    shutil.copytree(ROOT / "workflow", project / "workflow", ignore=shutil.ignore_patterns("__pycache__", ".snakemake"))
    cfg = {
        "plugins": ["my_plugin"],
        "datasets": {"toy": {"source": "toy", "run": {"dataset": {"toy": {"users": 100}}}}},
        "run": {"train": {"epochs": 2, "patience": 2, "batch_size": 512}, "eval": {"batch_size": 256}},
        "methods": ["mostpop", "ew", "halfaux", "pmtrec"], "seeds": [0, 1],
        "tune": {"grids": {"halfaux": {"share": [0.25, 0.75]}}},
        "analysis": {"map_methods": []},
        "resources": {"train": {"threads": 1, "gpu": 0}},
    }
    (project / "study.yaml").write_text(yaml.safe_dump(cfg))
    base = [str(SNAKEMAKE), "-s", "workflow/Snakefile", "all", "--configfile", "study.yaml"]
    dry = subprocess.run(base + ["-n"], cwd=project, env=_env(), capture_output=True, text=True, timeout=300)
    assert dry.returncode == 0, dry.stderr[-3000:]
    run = subprocess.run(base + ["--cores", "2"], cwd=project, env=_env(), capture_output=True, text=True,
                         timeout=900)
    assert run.returncode == 0, (run.stderr + run.stdout)[-4000:]
    summary = pd.read_csv(project / "results/tables/summary.csv")
    assert {"mostpop", "ew", "halfaux"} <= set(summary["method"])
    methods = pd.read_csv(project / "results/tables/methods.csv", keep_default_na=False).set_index("method")
    assert methods.loc["halfaux", "label"] == "Half-aux" and methods.loc["halfaux", "colour"] == "#123456"
    selected = yaml.safe_load((project / "results/tune/toy/halfaux/selected.yaml").read_text())
    assert selected["train"]["method_params"]["share"] in (0.25, 0.75)
    pdf = project / "reports/pmtrec_report.pdf"
    assert pdf.is_file() and pdf.read_bytes()[:5] == b"%PDF-"
    section = json.loads((project / "results/report/02_main_comparison/section.json").read_text())
    assert "Half-aux" in json.dumps(section)  # the plugin's label, from the methods table


def test_the_worked_examples_of_docs_extending_run_as_written(tmp_path):
    """docs/extending.md's two modules, verbatim: prepare a dataset with one, train the other on it."""
    import numpy as np
    import re as _re

    text = (ROOT / "docs/extending.md").read_text()
    blocks = _re.findall(r"```python\n(.*?)```", text, _re.S)
    assert len(blocks) == 2
    (tmp_path / "my_method.py").write_text(blocks[0])
    (tmp_path / "my_data.py").write_text(blocks[1])
    rng = np.random.default_rng(0)
    rows = [(f"u{u}", f"i{i}", t) for u in range(80) for t, i in enumerate(rng.choice(60, 12, replace=False))]
    pd.DataFrame(rows, columns=["user", "item", "timestamp"]).to_csv(tmp_path / "ratings.csv", index=False)
    pd.DataFrame([(f"u{a}", f"u{b}") for a, b in rng.integers(0, 80, (200, 2))],
                 columns=["user", "friend"]).to_csv(tmp_path / "friends.csv", index=False)
    prepare = [sys.executable, "-m", "pmtrec", "prepare", "--set", "plugins=[my_data]", "--dataset", "mydata",
               "--set", "dataset.mydata.interactions=ratings.csv", "--set", "dataset.mydata.friends=friends.csv",
               "--set", "preprocess.split=temporal", "--out", "prepared"]
    res = subprocess.run(prepare, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    train = [sys.executable, "-m", "pmtrec", "train", "--set", "plugins=[my_method]", "--data", "prepared",
             "--method", "decayaux", "--set", "train.method_params.decay=0.8", "--epochs", "2", "-q", "--out", "r.json"]
    res = subprocess.run(train, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["tasks"] == ["rec", "social"]
    assert [e["weight"]["social"] for e in r["curves"]] == pytest.approx([1.0, 0.8])
