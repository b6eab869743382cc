"""Convergence (cap-bound share), headroom (per-group oracle) and the tuning-protocol table, and
their report tables: hand-computed values."""

import json

import numpy as np
import pandas as pd
import pytest

from pmtrec.report import personalization, protocol
from pmtrec.study.diagnostics import convergence_table, headroom_table
from pmtrec.study.tuning import protocol_table


def _eff(rows):
    return pd.DataFrame(rows, columns=["kind", "dataset", "method", "variant", "seed", "stopped_by", "best_epoch",
                                       "epochs_run"])


def test_convergence_share_and_flag():
    eff = _eff([("main", "d", "ew", "", s, by, best, 100) for s, (by, best) in
                enumerate([("cap", 100), ("patience", 40), ("patience", 50), ("patience", 60), ("patience", 70),
                            ("patience", 30), ("patience", 31), ("patience", 32), ("patience", 33), ("patience", 34)])]
               + [("main", "d", "pmtrec", "", s, "cap", 90 + s, 100) for s in range(4)]
               + [("main", "d", "mostpop", "", 0, "none", 0, 0)])
    c = convergence_table(eff).set_index("method")
    assert "mostpop" not in c.index  # untrained: no cap to hit
    assert c.loc["ew", "runs"] == 10 and c.loc["ew", "cap_stopped"] == 1
    assert c.loc["ew", "cap_share"] == pytest.approx(0.1) and not c.loc["ew", "flagged"]  # 10% is not above 10%
    assert c.loc["ew", "best_at_last_share"] == pytest.approx(0.1)
    assert c.loc["pmtrec", "cap_share"] == 1.0 and c.loc["pmtrec", "flagged"]
    assert c.loc["pmtrec", "best_at_last"] == 0  # 90..93 of 100
    assert convergence_table(eff.iloc[0:0]).columns.tolist()[:3] == ["kind", "dataset", "method"]


def _groups(values):
    """values: method -> [group 0 value, group 1 value] for seed 0; seed 1 adds 0.02 to every value."""
    rows = []
    for method, vals in values.items():
        for seed, shift in ((0, 0.0), (1, 0.02)):
            for g, (v, n) in enumerate(zip(vals, (300, 100))):
                rows.append(("main", "d", method, "", seed, "test", str(g), n, "ndcg@20", v + shift))
    return pd.DataFrame(rows, columns=["kind", "dataset", "method", "variant", "seed", "split", "group", "n_users",
                                       "metric", "value"])


def test_headroom_oracle_against_best_overall():
    # overall (user-weighted, seed mean): a = (0.11*300 + 0.31*100)/400 = 0.16; b = (0.06*300 + 0.51*100)/400 = 0.1725
    h = headroom_table(_groups({"a": [0.10, 0.30], "b": [0.05, 0.50], "mostpop": [0.2, 0.9]}), ["a", "b"])
    g = h.set_index("group")
    assert g.loc["0", "best_method"] == "a" and g.loc["0", "best_value"] == pytest.approx(0.11)
    assert g.loc["1", "best_method"] == "b" and g.loc["1", "best_value"] == pytest.approx(0.51)
    assert set(g["overall_method"]) == {"b"}
    oracle = (0.11 * 300 + 0.51 * 100) / 400
    assert g.loc["all", "best_value"] == pytest.approx(oracle)
    assert g.loc["all", "overall_value"] == pytest.approx(0.1725)
    assert g.loc["all", "gain_pct"] == pytest.approx(100 * (oracle - 0.1725) / 0.1725)
    assert g.loc["0", "gain"] == pytest.approx(0.11 - 0.06)
    same = headroom_table(_groups({"a": [0.10, 0.30], "b": [0.05, 0.20]}))
    assert same.set_index("group").loc["all", "gain"] == pytest.approx(0.0)
    table, reading = personalization.headroom_table(h, "d")
    assert table.rows[-1][0].text == "all (oracle)" and table.rows[-1][2].text == "per-group best"
    assert [r[2].text for r in table.rows[:2]] == ["a", "b"]  # the best method of each group
    assert "another method is best in 1 of the 2 groups" in reading.lower()
    assert "gains nothing" in personalization.headroom_reading(same, "d")


def test_protocol_table_runs_and_declared(tmp_path):
    tuning = pd.DataFrame({"dataset": ["d"] * 4 + ["e"] * 2, "method": ["ew"] * 4 + ["ew"] * 2,
                           "variant": ["lr=1", "lr=1", "lr=2", "lr=2", "lr=1", "lr=2"],
                           "seed": [100, 101, 100, 101, 100, 100], "metric": "ndcg@20", "value": 0.1,
                           "selected": False, "param:train.lr": [0.01, 0.01, 0.002, 0.002, 0.01, 0.002],
                           "param:w": [[1, 0.1], [1, 0.1], [1, 0.3], [1, 0.3], [1, 0.1], [1, 0.3]]})
    declared = {"budget": 2, "seeds": [100, 101], "metric": "ndcg@20", "sampler": "sobol", "sampler_seed": 0,
                "split_seed": "run", "spaces": {"ew": {"train.lr": [0.002, 0.01]}},
                "development": [{"dataset": "d", "method": "ew", "note": "chosen on d"}]}
    t = protocol_table(tuning, declared)
    get = lambda d, m, i: json.loads(t[(t.dataset == d) & (t.method == m) & (t.item == i)]["value"].item())  # noqa: E731
    assert get("d", "ew", "settings") == 2 and get("e", "ew", "settings") == 2
    assert get("d", "ew", "seeds") == [100, 101] and get("e", "ew", "seeds") == [100]
    assert get("d", "ew", "run:train.lr") == [0.002, 0.01]  # numeric order
    assert get("d", "ew", "run:w") == [[1, 0.1], [1, 0.3]]  # lists deduplicated
    assert get("", "", "budget") == 2 and get("", "ew", "space:train.lr") == [0.002, 0.01]
    assert get("d", "ew", "development") == "chosen on d"
    table, reading = protocol.protocol_table(t)
    assert table.data is not None and "budget of 2 tuning settings" in reading and "chosen on d" in reading
    path = tmp_path / "tuning_protocol.csv"
    t.to_csv(path, index=False)  # as the report reads it: the study-wide rows' "" come back as NaN
    table, again = protocol.protocol_table(pd.read_csv(path))
    assert again == reading and table.rows[0][3].text == "lr ∈ {0.002, 0.01}"
    only_runs = protocol_table(tuning)
    assert set(only_runs["dataset"]) == {"d", "e"}  # no declared rows without a protocol
    assert "values run are listed" in protocol.protocol_reading(only_runs)
    unequal = protocol_table(pd.concat([tuning, tuning.assign(method="uw").iloc[:2]]))
    assert "did not all get the same number" in protocol.protocol_reading(unequal)


def test_convergence_report_flags():
    eff = _eff([("main", "d", "ew", "", s, "patience", 10, 30) for s in range(5)]
               + [("main", "d", "pmtrec", "", s, "cap" if s < 2 else "patience", 30, 30) for s in range(5)])
    conv = convergence_table(eff)
    table, reading = protocol.convergence_table(conv, "d")
    assert "PMTRec (40%)" in reading and "main runs" in reading
    ok = convergence_table(eff[eff.method == "ew"])
    assert "no method above" in protocol.convergence_reading(ok)
    assert np.isclose(conv.set_index("method").loc["pmtrec", "cap_share"], 0.4)


def test_controls_table_reads_each_verdict():
    from pmtrec.report import claims

    comp = pd.DataFrame([
        {"dataset": "d", "method": "static-schedule", "metric": "ndcg@20", "verdict": "equivalent", "diff": 0.0001,
         "rel_pct": 0.2, "ci_low": -0.001, "ci_high": 0.0012, "p_holm": 0.9, "note": ""},
        {"dataset": "d", "method": "pmtrec-shuffled", "metric": "ndcg@20", "verdict": "supported", "diff": 0.004,
         "rel_pct": 8.0, "ci_low": 0.002, "ci_high": 0.006, "p_holm": 0.001, "note": ""},
        {"dataset": "d", "method": "pmtrec-shuffled", "metric": "recall@20", "verdict": "contradicted", "diff": -0.01,
         "rel_pct": -5.0, "ci_low": -0.02, "ci_high": -0.001, "p_holm": 0.01, "note": ""},
        {"dataset": "d", "method": "ew", "metric": "ndcg@20", "verdict": "supported", "diff": 0.01,
         "rel_pct": 5.0, "ci_low": 0.0, "ci_high": 0.02, "p_holm": 0.01, "note": ""}])
    table, reading = claims.controls_table(comp)
    assert len(table.rows) == 2  # NDCG@20 rows of the two controls, not EW
    assert "nothing beyond the schedule measurably matters" in reading
    assert "PMTRec is better: what the control removes matters" in reading
    assert table.rows[1][3].text == "+0.0040 (+8.0%)" and table.rows[1][5].text == "0.001"
    _, recall = claims.controls_table(comp, "recall@20")
    assert "the control is better than PMTRec" in recall
    assert claims.controls_table(comp[comp.method == "ew"]) is None


def test_a_control_is_never_the_best_baseline():
    from pmtrec.study.statistics import best_baselines

    runs = pd.DataFrame([("main", "d", m, "", 0, "valid", "ndcg@20", v) for m, v in
                         [("static-schedule", 0.9), ("pmtrec", 0.8), ("ew", 0.5), ("uw", 0.6), ("mostpop", 0.95)]],
                        columns=["kind", "dataset", "method", "variant", "seed", "split", "metric", "value"])
    assert best_baselines(runs) == {"d": "uw"}
    assert best_baselines(runs[runs.method != "uw"]) == {"d": "ew"}
