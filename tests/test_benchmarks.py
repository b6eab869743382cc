"""The benchmark suite's results file: a run of some sections keeps every other row."""

from __future__ import annotations

import pandas as pd

from benchmarks.suite import hardware, main


def test_suite_replaces_only_the_sections_it_ran(tmp_path):
    out = tmp_path / "cpu.csv"
    hw = hardware()
    pd.DataFrame([
        {"hardware": hw, "section": "run", "dataset": "ciao", "item": "ew wall", "value": 117.0, "unit": "s"},
        {"hardware": hw, "section": "eval", "dataset": "old", "item": "stale", "value": -1.0, "unit": "x floor"},
        {"hardware": "cuda:other", "section": "eval", "dataset": "old", "item": "other machine", "value": 2.0,
         "unit": "x floor"},
    ]).to_csv(out, index=False)
    assert main(["--quick", "--only", "eval", "--out", str(out)]) == 0
    got = pd.read_csv(out)
    assert "stale" not in set(got["item"])                               # this machine's eval rows: replaced
    assert {"ew wall", "other machine"} <= set(got["item"])              # other sections and machines: kept
    fresh = got[(got.section == "eval") & (got.hardware == hw)]
    assert len(fresh) > 0 and (fresh["value"] > 0).all()
