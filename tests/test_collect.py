"""`pmtrec collect`: tidy tables from runs made outside the workflow."""

from __future__ import annotations

import contextlib
import copy
import io
import json

import pandas as pd
import pytest

from conftest import tiny_config
from pmtrec.cli import main
from pmtrec.training.results import write_result


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(argv))
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def results(tiny_data, tmp_path_factory):
    """ew on seeds 0 and 1 (one labelled with a custom key), single on seed 0; a non-result JSON beside them."""
    from pmtrec.train import train

    root = tmp_path_factory.mktemp("runs")
    records = {}
    for method, seed in [("ew", 0), ("ew", 1), ("single", 0)]:
        r = train(tiny_config(f"train.method={method}", f"train.seed={seed}", epochs=1), tiny_data, log=lambda *_: None)
        if seed == 1:
            r["labels"] = {"note": "by hand"}
        write_result(root / "sub" / f"{method}-{seed}.json", r)
        records[(method, seed)] = r
    (root / "probe.json").write_text(json.dumps({"schema": "something else"}))
    return root, records


def test_collect_makes_one_row_per_run_split_and_metric(results, tmp_path):
    root, records = results
    rc, out, err = cli("collect", str(root), "-o", str(tmp_path / "runs.csv"), "--summary", str(tmp_path / "s.csv"))
    assert rc == 0, err
    assert out == f"3 runs (2 methods, 1 datasets) -> {tmp_path / 'runs.csv'}, summary -> {tmp_path / 's.csv'}\n"
    runs = pd.read_csv(tmp_path / "runs.csv", keep_default_na=False)
    assert list(runs.columns[:10]) == ["kind", "dataset", "method", "variant", "seed", "path", "config_hash",
                                       "best_epoch", "epochs_run", "stopped_by"]
    assert set(runs["kind"]) == {"main"} and set(runs["dataset"]) == {"synthetic-tiny"}
    for (method, seed), r in records.items():
        mine = runs[(runs.method == method) & (runs.seed == seed)]
        n_metrics = len(r["valid"]["overall"]) + len(r["test"]["overall"])
        assert len(mine) == n_metrics and set(mine["config_hash"]) == {r["config_hash"]}
        got = mine[(mine.split == "test") & (mine.metric == "ndcg@20")]["value"].item()
        assert got == pytest.approx(r["test"]["overall"]["ndcg@20"])
        assert set(mine["note"]) == ({"by hand"} if seed == 1 else {""})  # a label is a column
    summary = pd.read_csv(tmp_path / "s.csv", keep_default_na=False)
    ew = summary[(summary.method == "ew") & (summary.split == "test") & (summary.metric == "ndcg@20")]
    values = [records[("ew", s)]["test"]["overall"]["ndcg@20"] for s in (0, 1)]
    assert ew["n"].item() == 2 and ew["mean"].item() == pytest.approx(sum(values) / 2)


def test_a_labelled_result_keeps_its_study_place(results, tmp_path):
    root, records = results
    r = copy.deepcopy(records[("ew", 0)])
    r["labels"] = {"stage": "tune", "dataset": "tiny", "setting": "lr=0.1"}
    write_result(tmp_path / "t.json", r)
    rc, _, err = cli("collect", str(tmp_path / "t.json"), "-o", str(tmp_path / "runs.csv"))
    assert rc == 0, err
    runs = pd.read_csv(tmp_path / "runs.csv", keep_default_na=False)
    assert set(zip(runs.kind, runs.dataset, runs.variant)) == {("tune", "tiny", "lr=0.1")}


def test_the_same_run_twice_or_two_configs_in_one_row_are_refused(results, tmp_path):
    root, records = results
    a = root / "sub" / "ew-0.json"
    write_result(tmp_path / "copy.json", records[("ew", 0)])
    rc, out, err = cli("collect", str(a), str(tmp_path / "copy.json"), "-o", str(tmp_path / "runs.csv"))
    assert (rc, out) == (2, "")
    assert err == f"pmtrec: error: {a} and {tmp_path / 'copy.json'}: the same run twice (a copy or a rerun; collect one of them)\n"
    other = copy.deepcopy(records[("ew", 0)])
    other["config_hash"] = "0" * 16
    write_result(tmp_path / "other.json", other)
    rc, _, err = cli("collect", str(a), str(tmp_path / "other.json"), "-o", str(tmp_path / "runs.csv"))
    assert rc == 2 and "one kind/dataset/method/variant/seed with different configs" in err
    assert not (tmp_path / "runs.csv").exists()


def test_no_results_and_a_broken_file_are_one_line_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    rc, _, err = cli("collect", str(tmp_path / "empty"), "-o", str(tmp_path / "runs.csv"))
    assert (rc, err) == (2, f"pmtrec: error: no result JSONs (schema pmtrec.result/1) in {tmp_path / 'empty'}\n")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    rc, _, err = cli("collect", str(bad), "-o", str(tmp_path / "runs.csv"))
    assert rc == 2 and err.startswith(f"pmtrec: error: {bad}: not valid JSON (line 1")
    assert not (tmp_path / "runs.csv").exists()
