"""The second round's screening (benchmarks/second_round): its decision rule and its plugin arms."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from benchmarks.second_round.screen import rule_table, runs, screen_table, targets

ROOT = Path(__file__).resolve().parents[1]


def _frame(values: dict) -> pd.DataFrame:
    """{(dataset, arm, setting): (seed100, seed101)} as runs() gives it."""
    rows = [{"dataset": d, "arm": a, "setting": s, "seed": seed, "valid_ndcg@20": v, "best_epoch": 40,
             "epochs_run": 40} for (d, a, s), vs in values.items() for seed, v in zip((100, 101), vs)]
    return pd.DataFrame(rows)


def test_screen_selects_the_best_mean_among_complete_settings():
    frame = _frame({("ciao", "pmtrec", "a"): (0.040, 0.042), ("ciao", "pmtrec", "b"): (0.045, 0.041),
                    ("ciao", "pmtrec", "c"): (0.090, float("nan"))})
    frame = frame.dropna()  # setting c has one seed only: not complete, never selected
    got = screen_table(frame).iloc[0]
    assert got.selected == "b" and got["mean"] == pytest.approx(0.043) and got.spread == pytest.approx(0.004)
    assert (got.settings_done, got.settings_seen) == (2, 3)


def test_rule_counts_wins_and_losses_beyond_the_reference_spread():
    vals = {}
    for d, ref, cand in (("ciao", (0.040, 0.044), (0.043, 0.043)),        # +0.001: higher
                         ("lastfm", (0.100, 0.101), (0.099, 0.099)),      # -0.0015, spread 0.001: worse
                         ("amazon-hin", (0.050, 0.050), (0.051, 0.051))):  # higher
        vals[(d, "pmtrec", "x")] = ref
        vals[(d, "pmtrec-softmax", "x")] = cand
    rule = rule_table(screen_table(_frame(vals)), budget=1).set_index("candidate")
    r = rule.loc["pmtrec-softmax"]
    assert (r.datasets, r.higher_on) == (3, 2)
    assert r.worse_beyond_spread == "lastfm" and not r.can_still_pass and not r.passes
    assert r.mean_difference == pytest.approx((0.001 - 0.0015 + 0.001) / 3)
    # within the spread is not a loss: 2 wins of 3, and Epinions to come, can still pass
    vals[("lastfm", "pmtrec-softmax", "x")] = (0.1003, 0.1003)
    r = rule_table(screen_table(_frame(vals)), budget=1).set_index("candidate").loc["pmtrec-softmax"]
    assert r.higher_on == 2 and r.worse_beyond_spread == "" and r.can_still_pass and not r.passes
    # ... and passes with a win on Epinions (3 of 4), not with a tie there (2 of 4)
    for epi, passes in (((0.031, 0.031), True), ((0.030, 0.030), False)):
        vals[("epinions", "pmtrec", "x")] = (0.030, 0.030)
        vals[("epinions", "pmtrec-softmax", "x")] = epi
        r = rule_table(screen_table(_frame(vals)), budget=1).set_index("candidate").loc["pmtrec-softmax"]
        assert (r.datasets, r.passes, r.can_still_pass) == (4, passes, passes)


def test_epinions_gets_the_two_best_candidates_that_can_still_pass():
    from benchmarks.second_round.screen import best_for_epinions

    vals = {}
    gains = {"pmtrec-softmax": 0.002, "pmtrec-cosine": 0.004, "pmtrec-ema": 0.001, "pmtrec-persample": -0.01,
             "ew-anchored": 0.01}
    for d in ("ciao", "lastfm", "amazon-hin"):
        vals[(d, "pmtrec", "x")] = vals[(d, "ew", "x")] = (0.05, 0.05)
        for arm, g in gains.items():
            vals[(d, arm, "x")] = (0.05 + g, 0.05 + g)
    rule = rule_table(screen_table(_frame(vals)), budget=1)
    assert best_for_epinions(rule) == ["pmtrec-cosine", "pmtrec-softmax"]  # ew-anchored is judged against ew


def test_runs_reads_validation_only(tmp_path):
    d = tmp_path / "tune" / "ciao" / "ew" / "train.lr=0.001"
    d.mkdir(parents=True)
    (d / "seed100.json").write_text(json.dumps({"valid": {"overall": {"ndcg@20": 0.05}},
                                                "test": {"overall": {"ndcg@20": 0.9}}, "best_epoch": 35,
                                                "epochs_run": 40}))
    got = runs(tmp_path)
    assert got.to_dict("records") == [{"dataset": "ciao", "arm": "ew", "setting": "train.lr=0.001", "seed": 100,
                                       "valid_ndcg@20": 0.05, "best_epoch": 35, "epochs_run": 40}]
    assert not any("test" in c for c in got.columns)


def test_targets_cover_every_dataset_and_arm():
    got = targets()
    assert len(got) == 3 * 8 and "results/tune/lastfm/pmtrec-cosine/selected.yaml" in got


def test_plugin_arms_are_pmtrec_and_ew_with_one_switch():
    # in a subprocess: the plugin's methods must not enter this process's catalogue
    code = (
        "import benchmarks.second_round.candidates, json\n"
        "from pmtrec.methods import build_method\n"
        "t = ('rec', 'social', 'category')\n"
        "m = {n: build_method(n, t, {}) for n in ('pmtrec-softmax', 'pmtrec-persample', 'pmtrec-ema',"
        " 'pmtrec-cosine', 'pmtrec-anchored', 'ew-anchored')}\n"
        "print(json.dumps({'softmax': m['pmtrec-softmax'].weighting, 'persample': m['pmtrec-persample'].norms,"
        " 'ema': m['pmtrec-ema'].memory, 'cosine': m['pmtrec-cosine'].weighting,"
        " 'anchored': m['pmtrec-anchored'].weighting, 'override': build_method('pmtrec-ema', t,"
        " {'memory_decay': 0.5}).memory_decay, 'ew': type(m['ew-anchored']).__mro__[1].__name__}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == {"softmax": "softmax_norms", "persample": "per_sample", "ema": "ema", "cosine": "cosine",
                   "anchored": "log_norms", "override": 0.5, "ew": "EqualWeight"}


def test_cold_users_keeps_the_screens_preprocessing_and_reads_groups_from_the_log(tmp_path, tiny_data):
    from benchmarks.second_round import cold_users as cu
    from pmtrec.data.store import write_prepared

    cfg = cu.screen_config()
    assert cu.prepare_overrides("amazon-hin", cfg) == ["preprocess.split=temporal"]
    assert cu.prepare_overrides("ciao", cfg) == []
    with pytest.raises(SystemExit, match="no screen selection of ew on ciao"):
        cu.shared_setting(tmp_path, "ciao")
    sel = tmp_path / "results/tune/ciao/ew/selected.yaml"
    sel.parent.mkdir(parents=True)
    sel.write_text("train:\n  lr: 0.005\n  l2: 1.0e-05\n")
    assert cu.shared_setting(tmp_path, "ciao") == {"train.lr": 0.005, "train.l2": 1e-05}

    data = write_prepared(tiny_data, tmp_path / "tiny")
    ranges = cu.group_ranges(data, 5)
    lows, highs = [ranges[str(g)][0] for g in range(5)], [ranges[str(g)][1] for g in range(5)]
    assert lows == sorted(lows) and highs == sorted(highs) and all(lo <= hi for lo, hi in zip(lows, highs))
    res = {"best_epoch": 10, "valid": {"groups": {str(g): {"ndcg@20": 0.1 * g, "recall@20": 0.2, "n_users": 3}
                                                  for g in range(5)}},
           "curves": [{"row_weight_by_user_group": {"0": {"rec": 0.6, "social": 0.4}}},
                      {"row_weight_by_user_group": {"0": {"rec": 0.8, "social": 0.2}}}, {}]}
    metrics, weights = cu.rows_of("tiny", "pmtrec", 100, res, ranges)
    assert [m["valid_ndcg@20"] for m in metrics] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    assert metrics[0]["train_min"] == lows[0]
    assert len(weights) == 1 and weights[0]["weight_rec"] == pytest.approx(0.7)
    assert weights[0]["weight_social"] == pytest.approx(0.3)


def test_cold_users_refuses_reported_seeds():
    from benchmarks.second_round import cold_users as cu

    with pytest.raises(SystemExit, match="tuning seeds only"):
        cu.main(["--screen", "/nonexistent", "--seeds", "0"])


def test_group_weights_average_the_selected_settings_last_epoch_over_seeds(tmp_path):
    from benchmarks.second_round.screen import group_weights

    d = tmp_path / "tune" / "ciao" / "pmtrec" / "train.lr=0.005"
    d.mkdir(parents=True)
    for seed, social in ((100, 0.2), (101, 0.4)):
        curves = [{"row_weight_by_user_group": {"0": {"rec": 0.0, "social": 1.0}}},  # an earlier epoch: not read
                  {"row_weight_by_user_group": {"0": {"rec": 1 - social, "social": social},
                                                "4": {"rec": 0.5, "social": 0.5}}}]
        (d / f"seed{seed}.json").write_text(json.dumps({"curves": curves}))
    other = tmp_path / "tune" / "ciao" / "pmtrec" / "train.lr=0.002"  # not the selected setting
    other.mkdir()
    (other / "seed100.json").write_text(json.dumps({"curves": [{"row_weight_by_user_group": {"0": {"social": 9}}}]}))
    screen = pd.DataFrame([{"dataset": "ciao", "arm": "pmtrec", "selected": "train.lr=0.005"}])
    got = group_weights(tmp_path, screen).set_index("group")
    assert got.loc[0, "social"] == pytest.approx(0.3) and got.loc[0, "rec"] == pytest.approx(0.7)
    assert got.loc[4, "social"] == pytest.approx(0.5) and list(got.index) == [0, 4]
