"""Malformed inputs through the command line: each is one line on stderr naming the file, key or
value, a non-zero exit status and no traceback; or, where the documented behaviour is to clean
the input (duplicates, self-loops, links to unknown users), exit 0 with the cleaning reported.

Table-driven, in-process (`pmtrec.cli.main`, stderr captured); two cases also run as real
subprocesses to prove the exit status and the absence of a traceback end to end. Raw fixtures are
written in the real formats (scipy.io.savemat into a temporary mirror; checksums null).
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.io

from pmtrec.cli import main

FILES_NULL = "{rating.mat: null, trustnetwork.mat: null, category.txt: null}"


def base_rows() -> np.ndarray:
    """Ciao rating rows [user, item, category, rating, helpfulness]: 40 users x 8 of 30 items."""
    rng = np.random.default_rng(0)
    return np.array([[u, i, 1 + i % 4, 1 + (u + i) % 5, 1] for u in range(1, 41)
                     for i in sorted(rng.choice(np.arange(1, 31), size=8, replace=False))], dtype=np.float64)


def base_trust() -> np.ndarray:
    return np.array([[u, 1 + u % 40] for u in range(1, 41)], dtype=np.float64)


def write_mirror(root: Path, rating=None, trust=None, rating_var: str = "rating",
                 rating_bytes: bytes | None = None, drop: str | None = None) -> Path:
    d = root / "mirror" / "ciao"
    d.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(d / "rating.mat", {rating_var: base_rows() if rating is None else rating})
    scipy.io.savemat(d / "trustnetwork.mat", {"trustnetwork": base_trust() if trust is None else trust})
    (d / "category.txt").write_text("1 A\n2 B\n3 C\n4 D\n")
    if rating_bytes is not None:
        (d / "rating.mat").write_bytes(rating_bytes)
    if drop is not None:
        (d / drop).unlink()
    return root / "mirror"


def prepare_args(root: Path, *extra: str) -> list[str]:
    # `--set dataset.source=...` in `extra` wins over this one (the overrides apply in order)
    return ["prepare", "--set", "dataset.source=ciao", "--set", f"dataset.mirror={root / 'mirror'}",
            "--set", f"dataset.cache={root / 'cache'}", "--set", "dataset.ciao.url=null",
            "--set", f"dataset.ciao.files={FILES_NULL}", *extra, "--out", str(root / "prepared")]


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as exc:  # argparse
            rc = exc.code
    return rc, out.getvalue(), err.getvalue()


def assert_one_line_error(rc: int, stderr: str, *words: str) -> str:
    assert rc == 2, (rc, stderr)
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("pmtrec: error: "), lines[0]
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


def with_row(rows: np.ndarray, r: int, c: int, value: float) -> np.ndarray:
    rows = rows.copy()
    rows[r, c] = value
    return rows


def truncated_mat() -> bytes:
    buf = io.BytesIO()
    scipy.io.savemat(buf, {"rating": base_rows()})
    data = buf.getvalue()
    return data[: len(data) // 2]


# ---------------------------------------------------------------------------- prepare: errors
# (name, fixture kwargs for write_mirror, extra CLI args, words the one error line must contain)
PREPARE_ERRORS = [
    ("truncated .mat", {"rating_bytes": truncated_mat()}, [], ["rating.mat", "not a readable MATLAB file"]),
    ("not a MATLAB file", {"rating_bytes": b"user,item,rating\n1,2,5\n"}, [],
     ["rating.mat", "not a readable MATLAB file"]),
    ("empty .mat file", {"rating_bytes": b""}, [], ["rating.mat", "not a readable MATLAB file"]),
    ("wrong variable name", {"rating_var": "ratings"}, [],
     ["rating.mat", "MATLAB variable 'rating' not found (found: ratings)"]),
    ("too few columns", {"rating": base_rows()[:, :3]}, [],
     ["rating.mat", "variable 'rating' must be a numeric matrix with >= 4 columns"]),
    ("non-integer item id", {"rating": with_row(base_rows(), 2, 1, 10.5)}, [],
     ["rating.mat", "column 2 (item)", "non-integer id 10.5", "row 3"]),
    ("NaN user id", {"rating": with_row(base_rows(), 4, 0, np.nan)}, [],
     ["rating.mat", "column 1 (user)", "non-integer id nan"]),
    ("negative user id", {"rating": with_row(base_rows(), 0, 0, -3)}, [],
     ["interactions.user", "negative id -3"]),
    ("negative friend id", {"trust": with_row(base_trust(), 5, 1, -7)}, [], ["social.friend", "negative id -7"]),
    ("NaN rating", {"rating": with_row(base_rows(), 7, 3, np.nan)}, [], ["interactions.rating", "NaN rating"]),
    ("empty after filtering", {}, ["--set", "preprocess.user_core=1000"],
     ["empty after filtering", "user_core=1000"]),
    ("empty after the implicit threshold", {}, ["--set", "preprocess.implicit_threshold=99"],
     ["implicit_threshold=99"]),
    ("file missing, no URL", {"drop": "trustnetwork.mat"}, [],
     ["trustnetwork.mat not found", "dataset.ciao.url is not set"]),
    ("checksum mismatch in the mirror", {}, ["--set", "dataset.ciao.files={rating.mat: '" + "a" * 64 + "', "
                                              "trustnetwork.mat: null, category.txt: null}"],
     ["rating.mat: SHA-256 mismatch: expected " + "a" * 64, "found "]),
    ("checksum that YAML reads as a number", {}, ["--set", "dataset.ciao.files={rating.mat: 0000, "
                                                   "trustnetwork.mat: null, category.txt: null}"],
     ["dataset.ciao.files: expected a mapping file name -> SHA-256"]),
    ("unknown dataset name", {}, ["--set", "dataset.source=movielens"],
     ["dataset.source: unknown source 'movielens'"]),
    ("unknown synthetic size", {}, ["--set", "dataset.source=synthetic", "--set", "dataset.synthetic.size=huge"],
     ["dataset.synthetic.size: unknown size 'huge'"]),
    ("bad split ratios", {}, ["--set", "preprocess.ratios=[0.5, 0.1]"], ["preprocess.ratios"]),
    ("bad split name", {}, ["--set", "preprocess.split=chronological"],
     ["preprocess.split: expected random or temporal, got 'chronological'"]),
    ("temporal split without timestamps", {}, ["--set", "preprocess.split=temporal"],
     ["split=temporal needs a timestamp column"]),
    ("bad download retries", {}, ["--set", "dataset.download.retries=many"],
     ["dataset.download.retries: expected a non-negative integer, got 'many'"]),
]


@pytest.mark.parametrize("name, fixture, extra, words", PREPARE_ERRORS, ids=[c[0] for c in PREPARE_ERRORS])
def test_prepare_error(name, fixture, extra, words, tmp_path):
    write_mirror(tmp_path, **fixture)
    rc, _, err = run_cli(prepare_args(tmp_path, *extra))
    assert_one_line_error(rc, err, *words)
    assert not (tmp_path / "prepared").exists()


# ---------------------------------------------------------------------------- prepare: cleaned
def prepared(root: Path) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    d = root / "prepared"
    stats = json.loads((d / "stats.json").read_text())
    social = pd.read_parquet(d / "social.parquet")
    users = pd.read_parquet(d / "user_map.parquet")
    return stats, social, users


def test_duplicate_interactions_are_merged_and_reported(tmp_path):
    """Documented rule (docs/data_format.md, preprocessing rule 2): duplicates are merged keeping the
    latest row, and counted in the statistics (stats.json and the table `pmtrec prepare` prints)."""
    rows = base_rows()
    dup = rows[[0, 1, 2, 10]].copy()
    dup[:, 3] = 1
    write_mirror(tmp_path, rating=np.vstack([rows, dup]))
    # a real process: prepare_dataset prints to the sys.stdout bound at import time
    res = subprocess.run([sys.executable, "-m", "pmtrec", *prepare_args(tmp_path)], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)
    rc, out, err = res.returncode, res.stdout, res.stderr
    assert rc == 0, err
    stats, _, _ = prepared(tmp_path)
    assert stats["duplicates_removed"] == 4 and stats["raw_interactions"] == len(rows) + 4
    assert any(line.split() == ["duplicates_removed", "4"] for line in out.splitlines())  # printed too


def test_social_self_loops_are_dropped(tmp_path):
    trust = np.vstack([base_trust(), [[3, 3], [7, 7]]])
    write_mirror(tmp_path, trust=trust)
    rc, _, err = run_cli(prepare_args(tmp_path))
    assert rc == 0, err
    _, social, users = prepared(tmp_path)
    assert not (social["user"] == social["friend"]).any()
    clean_root = tmp_path / "clean"
    write_mirror(clean_root)
    assert run_cli(prepare_args(clean_root))[0] == 0
    assert prepared(clean_root)[1].equals(social)  # exactly as if the self-loops were not there


def test_links_to_unknown_users_are_dropped(tmp_path):
    trust = np.vstack([base_trust(), [[1, 999], [998, 2], [997, 996]]])  # users without ratings
    write_mirror(tmp_path, trust=trust)
    rc, _, err = run_cli(prepare_args(tmp_path))
    assert rc == 0, err
    stats, social, users = prepared(tmp_path)
    raw = set(users["raw_id"])
    assert not {"999", "998", "997", "996"} & raw
    assert social.to_numpy().max() < stats["users"]
    clean_root = tmp_path / "clean"
    write_mirror(clean_root)
    assert run_cli(prepare_args(clean_root))[0] == 0
    assert prepared(clean_root)[1].equals(social)


# ---------------------------------------------------------------------------- custom CSV sources
CUSTOM_ERRORS = [
    ("wrong columns", "user_id,item\n1,2\n", ["inter.csv", "interactions columns must be user,item"]),
    ("empty user id", "user,item\n1,2\n,3\n", ["inter.csv", "empty user id at data row 2"]),
    ("non-numeric rating", "user,item,rating\n1,2,good\n", ["inter.csv", "non-numeric rating 'good'"]),
    ("NaN rating", "user,item,rating\n1,2,5\n1,3,\n", ["rating"]),
]


@pytest.mark.parametrize("name, text, words", CUSTOM_ERRORS, ids=[c[0] for c in CUSTOM_ERRORS])
def test_custom_csv_error(name, text, words, tmp_path):
    (tmp_path / "inter.csv").write_text(text)
    rc, _, err = run_cli(["prepare", "--dataset", "custom", "--set",
                          f"dataset.custom.interactions={tmp_path / 'inter.csv'}", "--out", str(tmp_path / "p")])
    assert_one_line_error(rc, err, *words)


# ---------------------------------------------------------------------------- train: config and names
@pytest.fixture(scope="module")
def ciao_prepared(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ciao")
    write_mirror(root)
    rc, _, err = run_cli(prepare_args(root))
    assert rc == 0, err
    return root / "prepared"


TRAIN_ERRORS = [
    ("unknown method", ["--method", "sgd"], ["train.method: unknown method 'sgd'"]),
    ("unknown method parameter", ["--method", "dwa", "--set", "train.method_params={temp: 2}"],
     ["train.method_params.temp: not a parameter of method 'dwa'"]),
    ("epochs not a number", ["--set", "train.epochs=ten"], ["train.epochs", "'ten'"]),
    ("negative learning rate", ["--set", "train.lr=-1"], ["train.lr", "-1"]),
    ("ks not a list", ["--set", "eval.ks=x"], ["eval.ks", "'x'"]),
    ("ks without 20", ["--set", "eval.ks=[10, 50]"], ["eval.ks", "includes 20", "[10, 50]"]),
    ("ks with a string", ["--set", "eval.ks=[10, twenty]"], ["eval.ks", "'twenty'"]),
    ("zero batch size", ["--set", "train.batch_size=0"], ["train.batch_size", "got 0"]),
    ("batch size as a float", ["--set", "train.batch_size=2.5"], ["train.batch_size", "2.5"]),
    ("boolean epochs", ["--set", "train.epochs=true"], ["train.epochs", "True"]),
    ("embedding size zero", ["--set", "model.dim=0"], ["model.dim", "got 0"]),
    ("init std as text", ["--set", "model.init_std=small"], ["model.init_std", "'small'"]),
    ("eval batch size as text", ["--set", "eval.batch_size=all"], ["eval.batch_size", "'all'"]),
    ("unknown optimizer", ["--set", "train.optimizer=sgd"], ["train.optimizer", "'sgd'"]),
    ("unknown device", ["--device", "tpu"], ["train.device: unknown device 'tpu'"]),
    ("unknown on_nonfinite", ["--set", "train.on_nonfinite=ignore"], ["train.on_nonfinite", "'ignore'"]),
    ("progress as text", ["--set", "train.progress=sometimes"], ["train.progress", "'sometimes'"]),
    ("section replaced by a scalar", ["--set", "eval=5"], ["eval: expected a mapping", "5"]),
    ("unknown config key", ["--set", "train.epoch=3"], ["unknown config key 'train.epoch'"]),
    ("unknown task setting", ["--set", "tasks.social=maybe"], ["tasks.social: must be auto, true or false"]),
    ("required relation missing", ["--set", "tasks.coview=true"], ["tasks.coview", "has no coview relation"]),
    ("missing prepared folder", ["--data", "/nonexistent/prepared"], ["/nonexistent/prepared"]),
]


@pytest.mark.parametrize("name, extra, words", TRAIN_ERRORS, ids=[c[0] for c in TRAIN_ERRORS])
def test_train_error(name, extra, words, ciao_prepared, tmp_path):
    out = tmp_path / "r.json"
    # plain --set first: a later --set of the same key in `extra` wins (shorthands like --epochs
    # or -q would be applied after every --set)
    args = ["train", "--data", str(ciao_prepared), "--set", "train.epochs=1", "--set", "train.progress=false",
            "--threads", "1", "--device", "cpu", *extra, "--out", str(out)]
    rc, _, err = run_cli(args)
    assert_one_line_error(rc, err, *words)
    assert not out.exists()


def test_config_file_errors(tmp_path, ciao_prepared):
    cases = {
        "bad.yaml": ("train: {epochs: [1,\n", ["bad.yaml: not valid YAML"]),
        "list.yaml": ("- 1\n- 2\n", ["list.yaml: top level must be a mapping"]),
        "typo.yaml": ("train:\n  epochz: 3\n", ["unknown config key 'train.epochz'"]),
        "types.yaml": ("train:\n  patience: soon\n", ["train.patience", "'soon'"]),
    }
    for name, (text, words) in cases.items():
        (tmp_path / name).write_text(text)
        rc, _, err = run_cli(["train", "--data", str(ciao_prepared), "--config", str(tmp_path / name), "-q"])
        assert_one_line_error(rc, err, *words)
    rc, _, err = run_cli(["train", "--config", str(tmp_path / "absent.yaml")])
    assert_one_line_error(rc, err, "absent.yaml: config file not found")


def test_corrupted_prepared_dataset(tmp_path, ciao_prepared):
    import shutil

    bad = tmp_path / "prepared"
    shutil.copytree(ciao_prepared, bad)
    path = bad / "interactions.parquet"
    path.write_bytes(path.read_bytes()[:-20])
    rc, _, err = run_cli(["train", "--data", str(bad), "-q", "--epochs", "1"])
    assert_one_line_error(rc, err, "interactions.parquet")


def test_result_path_that_cannot_be_written(tmp_path, ciao_prepared):
    (tmp_path / "taken").mkdir()
    rc, _, err = run_cli(["train", "--data", str(ciao_prepared), "-q", "--epochs", "1", "--threads", "1",
                          "--device", "cpu", "--out", str(tmp_path / "taken")])
    assert_one_line_error(rc, err, str(tmp_path / "taken"))


# ---------------------------------------------------------------------------- real processes
def test_subprocess_exit_status_and_no_traceback(tmp_path):
    write_mirror(tmp_path, rating_bytes=truncated_mat())
    env_cmd = [sys.executable, "-m", "pmtrec"]
    res = subprocess.run(env_cmd + prepare_args(tmp_path), capture_output=True, text=True, timeout=300,
                         cwd=tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.count("\n") == 1 and "rating.mat: not a readable MATLAB file" in res.stderr

    res = subprocess.run(env_cmd + ["train", "--set", "train.epochs=ten", "--set", "eval.ks=[5]"],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr == "pmtrec: error: train.epochs: expected a non-negative integer, got 'ten'\n"
