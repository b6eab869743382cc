"""pmtrec.training.per_user: the per-user metrics file round-trips, is written atomically and
refuses malformed files with a one-line error naming the file."""

from __future__ import annotations

import numpy as np
import pytest

from pmtrec import evaluate as ev
from pmtrec.errors import DataError, PmtrecError
from pmtrec.training import per_user as pu


@pytest.fixture(scope="module")
def result() -> ev.EvalResult:
    """A real evaluation: 6 users, 5 items, a fixed score table."""
    scores = np.random.default_rng(0).random((6, 5))
    targets = np.array([[0, 1], [0, 3], [2, 0], [3, 4], [5, 2], [5, 1]])

    def score(users):
        import torch

        return torch.as_tensor(scores)[users].clone()

    return ev.evaluate_ranking(score, 6, 5, targets, None, ks=(2, 20))


def test_round_trip_keeps_users_and_values(tmp_path, result):
    path = pu.write_per_user(tmp_path / "run.per_user.npz", result)
    assert path.exists() and not list(tmp_path.glob(".*.tmp"))
    df = pu.read_per_user(path)
    assert list(df.columns) == ["user", "ndcg@20", "recall@20"]
    np.testing.assert_array_equal(df["user"], [0, 2, 3, 5])  # users with a target
    for m in ("ndcg@20", "recall@20"):
        np.testing.assert_array_equal(df[m], result.per_user[m])
        assert df[m].mean() == pytest.approx(result.metrics[m])  # the run's own metric is their mean
    framed = pu.per_user_frame(path, "ciao", "ew", 3)
    assert list(framed.columns[:4]) == ["dataset", "method", "seed", "user"]
    assert (framed["seed"] == 3).all() and (framed["method"] == "ew").all()


def test_path_and_chosen_metrics(tmp_path, result):
    assert pu.per_user_path("results/main/ciao/ew/seed0.json").name == "seed0.per_user.npz"
    path = pu.write_per_user(tmp_path / "x.npz", result, metrics=("hit@2",))
    assert list(pu.read_per_user(path).columns) == ["user", "hit@2"]
    with pytest.raises(PmtrecError, match=r"x2\.npz: metric 'ndcg@10' was not evaluated"):
        pu.write_per_user(tmp_path / "x2.npz", result, metrics=("ndcg@10",))
    assert not (tmp_path / "x2.npz").exists()


def save(path, **arrays):
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    return path


@pytest.mark.parametrize("arrays, message", [
    ({"user": np.array([0, 1]), "ndcg@20": np.array([0.1, 0.2])}, "format"),
    ({"format": np.array(pu.FORMAT), "ndcg@20": np.array([0.1, 0.2])}, "'user' must be a 1-D integer"),
    ({"format": np.array(pu.FORMAT), "user": np.array([1, 0]), "ndcg@20": np.array([0.1, 0.2])}, "ascending"),
    ({"format": np.array(pu.FORMAT), "user": np.array([0, 1]), "ndcg@20": np.array([0.1])}, "one per user"),
    ({"format": np.array(pu.FORMAT), "user": np.array([0, 1]), "ndcg@20": np.array([0.1, np.nan])},
     "outside"),
    ({"format": np.array(pu.FORMAT), "user": np.array([0, 1]), "ndcg@20": np.array([0.1, 1.5])}, "user 1"),
    ({"format": np.array(pu.FORMAT), "user": np.array([0, 1])}, "no metric arrays"),
])
def test_malformed_files_are_refused(tmp_path, arrays, message):
    path = save(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=message) as err:
        pu.read_per_user(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_missing_and_garbage_files(tmp_path):
    with pytest.raises(DataError, match="no per-user metrics file"):
        pu.read_per_user(tmp_path / "none.npz")
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(DataError, match="junk.npz: not a per-user metrics file"):
        pu.read_per_user(tmp_path / "junk.npz")


@pytest.mark.parametrize("method", ["ew", "mostpop"])
def test_pmtrec_train_writes_the_per_user_file_beside_the_result(method, tmp_path):
    import contextlib
    import io
    import json

    from pmtrec.cli import main

    out = tmp_path / "r.json"
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        rc = main(["train", "--set", "dataset.synthetic.size=tiny", "--method", method, "--epochs", "1",
                   "--threads", "1", "-q", "--out", str(out)])
    assert rc == 0
    frame = pu.read_per_user(tmp_path / "r.per_user.npz")
    overall = json.loads(out.read_text())["test"]["overall"]
    for metric in pu.METRICS:  # the overall test metric is the mean over the evaluated users
        assert frame[metric].mean() == pytest.approx(overall[metric], rel=1e-12)
