"""`pmtrec train` around the run: the prepared folder's settings, labels, and checks before training."""

from __future__ import annotations

import contextlib
import io
import json

import pytest

from pmtrec.cli import main
from pmtrec.config import config_hash, load_config


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(argv))
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    folder = tmp_path_factory.mktemp("prep") / "tiny"
    rc, _, err = cli("prepare", "--set", "dataset.synthetic.size=tiny", "--set", "preprocess.seed=3",
                     "--out", str(folder))
    assert rc == 0, err
    return folder


FAST = ("--epochs", "1", "--threads", "1", "-q", "--set", "train.batch_size=1024")


def test_a_run_takes_the_dataset_settings_of_its_prepared_folder(prepared, tmp_path):
    out = tmp_path / "r.json"
    rc, _, err = cli("train", "--data", str(prepared), "--method", "ew", *FAST, "--out", str(out),
                     "--label", "stage=main", "--label", "dataset=tiny-3", "--label", "values={tau: 1.0}")
    assert rc == 0, err
    r = json.loads(out.read_text())
    assert r["config"]["preprocess"]["seed"] == 3  # not the default 0: the folder's
    meta = json.loads((prepared / "meta.json").read_text())
    assert r["data"] == {"path": str(prepared), "config_hash": meta["config_hash"],
                         "files_hash": r["data"]["files_hash"]}
    assert r["labels"] == {"stage": "main", "dataset": "tiny-3", "values": {"tau": 1.0}}
    assert "labels" not in r["config"]


def test_a_conflicting_dataset_setting_is_an_error_naming_the_key(prepared, tmp_path):
    rc, _, err = cli("train", "--data", str(prepared), "--set", "preprocess.seed=4", *FAST)
    assert rc == 2 and err.count("\n") == 1
    assert err.startswith("pmtrec: error: preprocess.seed: 4 conflicts with") and "prepared with 3" in err
    rc, _, err = cli("train", "--data", str(prepared), "--set", "preprocess.seed=3", *FAST)  # the same value
    assert rc == 0, err


def test_an_unwritable_out_fails_before_training(prepared, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    rc, out, err = cli("train", "--data", str(prepared), *FAST, "--out", str(blocker / "r.json"))
    assert rc == 2 and "cannot write there" in err and "epoch" not in out
    rc, _, err = cli("train", "--data", str(prepared), *FAST, "--out", str(tmp_path))
    assert rc == 2 and "is a folder" in err


def test_without_out_the_run_says_it_is_not_saved(prepared):
    rc, out, err = cli("train", "--data", str(prepared), *FAST)
    assert rc == 0 and "the result is printed, not saved" in err and "test recall@20=" in out


def test_threads_and_progress_do_not_change_the_config_hash():
    a = load_config(overrides=["train.threads=1", "train.progress=false"])
    b = load_config(overrides=["train.threads=4", "train.progress=true"])
    c = load_config(overrides=["train.lr=0.01"])
    assert config_hash(a) == config_hash(b) != config_hash(c)


def test_a_typo_in_a_source_section_is_an_unknown_key():
    rc, _, err = cli("config", "--set", "dataset.custom.socal=x.csv")
    assert rc == 2 and "unknown config key 'dataset.custom.socal'" in err
