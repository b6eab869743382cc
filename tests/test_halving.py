"""Successive-halving replay (benchmarks/halving.py): stopping rule, survivors, cost, selection, errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from benchmarks import halving as hv
from conftest import tiny_config
from pmtrec.train import Trainer
from pmtrec.training.results import write_result


def trial(name: str, scores, sec_per_epoch: float = 1.0) -> hv.Trial:
    scores = np.asarray(scores, dtype=float)
    return hv.Trial(name, scores, np.full(len(scores), sec_per_epoch), np.zeros(len(scores)))


# A: the eventual winner, slow starter; B: fast start, plateaus; C: mid start, jumps at 3; D: poor.
CURVES = [
    trial("A", [.1, .2, .3, .4, .5, .6, .7, .8]),
    trial("B", [.3, .35, .36, .37, .38, .39, .40, .41], sec_per_epoch=2.0),
    trial("C", [.2, .25, .5, .5, .5, .5, .5, .5]),
    trial("D", [.0, .05, .06, .07, .08, .09, .10, .11]),
]


def test_stop_epoch_follows_the_trainers_patience_rule():
    s = [.1, .2, .2, .15, .3]  # epoch 3 ties the best: not better (strict), a bad validation
    assert hv.stop_epoch(s, 2) == 4
    assert hv.stop_epoch(s, 3) == 5  # never 3 bad in a row: runs the whole curve
    assert hv.stop_epoch(s, 1) == 3


def test_stop_epoch_at_a_sparser_cadence_counts_validations_only():
    s = [.1, .5, .2, .4, .3, .45, .2, .3, .1, .1]
    # every 2nd epoch validated: epochs 2 (.5, best), 4 (.4), 6 (.45), 8 (.3) -> 3 bad validations at 8
    assert hv.stop_epoch(s, 3, eval_every=2, cap=10) == 8
    assert hv.stop_epoch(s, 4, eval_every=2, cap=10) == 10  # epoch 10: a validation, the 4th bad one
    assert hv.stop_epoch(s, 3, eval_every=3, cap=10) == 10  # validated 3, 6, 9 and the cap 10


def test_stop_epoch_matches_a_real_run(tiny_data):
    """Replaying a run's own patience on its curve gives the epochs it actually ran."""
    cfg = tiny_config("train.lr=0.05", "train.patience=2", epochs=30)
    res = Trainer(cfg, tiny_data).fit(log=lambda *_: None)
    scores = np.array([c["valid"]["ndcg@20"] for c in res["curves"]])
    assert hv.stop_epoch(scores, 2) == res["epochs_run"]
    assert scores[res["best_epoch"] - 1] == scores.max()


def test_rung_schedule():
    assert hv.rung_schedule(2, 2, 8) == [2, 4]
    assert hv.rung_schedule(5, 3, 100) == [5, 15, 45]
    assert hv.rung_schedule(1, 2, 2) == [1]


def test_halving_drops_the_eventual_winner_and_costs_what_each_trial_trained():
    sh = hv.halving(CURVES, first_rung=2, eta=2, patience=8, cap=8)
    # rung 2: best-so-far A .2, B .35, C .25, D .05 -> B, C go on (A, the best at epoch 8, is dropped);
    # rung 4: B .37, C .5 -> C alone trains on to epoch 8
    assert sh["rungs"] == "2/4" and sh["survivors"] == "2/1"
    assert sh["trained"].tolist() == [2, 4, 8, 2]
    assert sh["epochs"] == 16
    assert sh["seconds"] == pytest.approx(2 * 1 + 4 * 2 + 8 * 1 + 2 * 1)
    assert sh["jobs"] == 1 + 2 + 3 + 1  # B resumed once (after rung 2), C twice
    assert sh["selected"] == "C" and sh["score"] == pytest.approx(.5)
    full = hv.full_protocol(CURVES, patience=8)
    assert full["selected"] == "A" and full["epochs"] == 32 and full["seconds"] == pytest.approx(40)


def test_compare_reports_share_regret_and_startup():
    table = hv.compare(CURVES, [2], [2], patience=8, cap=8, startup_s=10.0)
    full, sh = table.iloc[0], table.iloc[1]
    assert full["eta"] == "full" and full["jobs"] == 4 and full["seconds_with_startup"] == pytest.approx(80)
    assert sh["share"] == pytest.approx(20 / 40)
    assert sh["share_with_startup"] == pytest.approx((20 + 7 * 10) / 80)  # the resumed jobs pay start-up again
    assert not sh["same_as_full"] and sh["regret"] == pytest.approx(.8 - .5)


def test_a_trial_stopped_before_a_rung_is_ranked_by_its_final_score():
    curves = [trial("X", [.6, .5, .4]),  # patience 2: ends after epoch 3, best .6
              trial("Y", [.1, .2, .3, .4, .5, .7, .75, .8, .85, .9]),
              trial("Z", [.2, .3, .61, .62, .63, .64, .65, .66, .67, .68])]
    sh = hv.halving(curves, first_rung=5, eta=3, patience=2, cap=10)
    # rung 5: X .6 (its final), Y .5, Z .63 -> Z alone goes on; X trained 3 epochs, not 5
    assert sh["trained"].tolist() == [3, 5, 10]
    assert sh["selected"] == "Z" and sh["jobs"] == 4
    # a later first rung sees Y overtake: the full protocol's choice
    late = hv.halving(curves, first_rung=6, eta=3, patience=2, cap=10)
    assert late["selected"] == hv.full_protocol(curves, 2)["selected"] == "Y"


def test_sparser_cadence_pays_only_the_validated_epochs():
    full = hv.full_protocol(CURVES, patience=8, eval_every=2, cap=8)  # epochs 2, 4, 6, 8 validated
    valid = [hv.Trial(t.name, t.scores, t.train_s, np.full(len(t.scores), 0.5)) for t in CURVES]
    assert hv.full_protocol(valid, 8, 2, 8)["seconds"] == pytest.approx(full["seconds"] + 4 * 4 * 0.5)
    with pytest.raises(hv.HalvingError, match="first rung: 3 is not a validated epoch"):
        hv.halving(CURVES, 3, 2, patience=4, cap=8, eval_every=2)


def test_a_curve_cut_by_the_runs_own_early_stopping_is_refused():
    cut = [trial("short", [.5, .4, .3]), trial("long", [.1] * 8)]  # "short" ended at 3 of cap 8
    assert hv.full_protocol(cut, patience=2, cap=8)["selected"] == "short"  # patience 2 stops it at 3
    with pytest.raises(hv.HalvingError, match="setting 'short': its curve ends at epoch 3"):
        hv.full_protocol(cut, patience=3, cap=8)


def test_ties_keep_file_order():
    curves = [trial("first", [.2, .3]), trial("second", [.2, .3])]
    assert hv.halving(curves, 1, 2, patience=5, cap=2)["selected"] == "first"
    assert hv.full_protocol(curves, 5)["selected"] == "first"


@pytest.mark.parametrize("r0, eta, match", [(2, 1, "eta: 1"), (2, 2.5, "eta: 2.5"), (0, 2, "first rung: 0"),
                                            (8, 2, "first rung: 8"), (True, 2, "first rung: True")])
def test_bad_rung_or_eta_is_one_line(r0, eta, match):
    with pytest.raises(hv.HalvingError, match=match):
        hv.halving(CURVES, r0, eta, patience=8, cap=8)


def test_negative_startup_refused():
    with pytest.raises(hv.HalvingError, match="--startup-s"):
        hv.compare(CURVES, [2], [2], patience=8, cap=8, startup_s=-1)


# ---- the command on real result files --------------------------------------------------------
def _results(tmp_path, tiny_data, *overrides, lrs=(0.01, 0.05, 0.2), tweak=None):
    folder = tmp_path / "tune"
    for lr in lrs:
        cfg = tiny_config(f"train.lr={lr}", "train.patience=3", *overrides, epochs=8)
        res = Trainer(cfg, tiny_data).fit(log=lambda *_: None)
        if tweak:
            tweak(res)
        res["labels"] = {"setting": f"train.lr={lr}", "values": {"train.lr": lr}}
        write_result(folder / f"lr{lr}.json", res)
    return folder


def test_command_writes_the_table_and_agrees_with_select_setting(tmp_path, tiny_data, capsys):
    folder = _results(tmp_path, tiny_data)
    out = tmp_path / "h.csv"
    assert hv.main([str(folder), "--rungs", "2", "4", "--eta", "2", "--out", str(out)]) == 0
    table = pd.read_csv(out)
    assert len(table) == 3 and table["patience"].eq(3).all()
    from pmtrec.study.tuning import select_setting
    chosen, _ = select_setting({str(p): {"train.lr": float(p.stem[2:])} for p in folder.glob("*.json")})
    assert table.loc[0, "selected"] == f"train.lr={chosen['train.lr']}"
    assert (table["share"] <= 1).all() and table.loc[0, "share"] == 1
    assert (table["regret"] >= 0).all()


def test_command_refuses_curves_without_every_validation(tmp_path, tiny_data, capsys):
    folder = _results(tmp_path, tiny_data, "train.eval_every=2", lrs=(0.05,))
    assert hv.main([str(folder), "--out", str(tmp_path / "h.csv")]) == 2
    assert "epoch 1 has no validation ndcg@20" in capsys.readouterr().err
    assert not (tmp_path / "h.csv").exists()


def test_command_refuses_a_longer_patience_than_the_curves_hold(tmp_path, tiny_data, capsys):
    def ended_early(res):  # its curve (at most 8 epochs) now falls short of a 20-epoch cap
        res["config"]["train"]["epochs"] = 20
        res["stopped_by"] = "patience"

    folder = _results(tmp_path, tiny_data, lrs=(0.05,), tweak=ended_early)
    assert hv.main([str(folder), "--patience", "100", "--rungs", "2", "--out", str(tmp_path / "h.csv")]) == 2
    err = capsys.readouterr().err
    assert f"its curve ends at epoch {len(json.loads(next(folder.glob('*.json')).read_text())['curves'])} " in err
    assert "before patience 100" in err
    assert not (tmp_path / "h.csv").exists()
