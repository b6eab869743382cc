"""Every registered method trains end to end on the synthetic ``tiny`` dataset and writes the result record."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import tiny_config
from pmtrec.methods import METHODS, available, entries
from pmtrec.train import Trainer, train

ROOT = Path(__file__).resolve().parent.parent
QUIET = lambda *_: None  # noqa: E731
STATEFUL = [e.name for e in entries() if e.kind == "method" and e.stateful]  # the catalogue says which


def tiny_cfg(*overrides: str) -> dict:
    return tiny_config(*overrides, epochs=2, batch_size=512)


def _check_record(r: dict, name: str) -> None:
    assert r["schema"] == "pmtrec.result/1" and r["method"] == name
    for split in ("valid", "test"):
        overall = r[split]["overall"]
        assert {"recall@20", "ndcg@20"} <= set(overall)
        assert all(0.0 <= v <= 1.0 for v in overall.values())
    if name == "mostpop":
        return
    assert r["epochs_run"] == 2 and len(r["curves"]) == 2
    tasks = r["tasks"]
    assert tasks[0] == "rec" and (len(tasks) == 1) == (name == "single")
    for entry in r["curves"]:
        assert set(entry["weight"]) == set(tasks) == set(entry["loss"])
        assert all(math.isfinite(v) for v in [*entry["weight"].values(), *entry["loss"].values()])
        base = name.split("-")[0]
        if base in METHODS and METHODS[base].uses_grads and len(tasks) > 1:
            assert all(-1.0 - 1e-6 <= c <= 1.0 + 1e-6 for c in entry["grad_cosine"].values())


@pytest.mark.parametrize("name", available())
def test_every_method_trains_end_to_end(name, tiny_data):
    r = train(tiny_cfg(f"train.method={name}"), tiny_data, log=QUIET)
    _check_record(r, name)


@pytest.mark.parametrize("name", STATEFUL)
def test_stateful_method_resumes_from_checkpoint_exactly(name, tiny_data, tmp_path):
    cfg = tiny_cfg(f"train.method={name}", "train.epochs=3")
    full = train(cfg, tiny_data, log=QUIET)
    ckpt = tmp_path / "run.ckpt"
    part = Trainer(tiny_cfg(f"train.method={name}", "train.epochs=3"), tiny_data)
    part.epochs = 2  # stop after two epochs, as if killed
    part.fit(checkpoint=ckpt, log=QUIET)
    resumed = Trainer(cfg, tiny_data).fit(checkpoint=ckpt, log=QUIET)
    assert resumed["test"] == full["test"]
    assert [c["weight"] for c in resumed["curves"]] == [c["weight"] for c in full["curves"]]


@pytest.mark.slow
def test_cli_trains_a_gradient_method_and_writes_the_result_json(tmp_path):
    out = tmp_path / "nashmtl.json"
    proc = subprocess.run([sys.executable, "-m", "pmtrec", "train", "--set", "dataset.synthetic.size=tiny",
                           "--method", "nashmtl", "--epochs", "2", "--threads", "1", "-q", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "nashmtl on synthetic-tiny" in proc.stdout
    _check_record(json.loads(out.read_text()), "nashmtl")


@pytest.mark.slow
def test_cli_rejects_an_unknown_method_parameter(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pmtrec", "train", "--set", "dataset.synthetic.size=tiny",
                           "--method", "metabalance", "--set", "train.method_params={relax: 0.5, strength: 2}",
                           "--epochs", "1", "--threads", "1", "-q"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2
    assert "train.method_params.strength" in proc.stderr and "relax" in proc.stderr
