"""Validation cadence (train.eval_every): which epochs are validated, what is selected, patience, resume."""

from __future__ import annotations

import pytest

from conftest import tiny_config
from pmtrec.errors import ConfigError
from pmtrec.train import Trainer

QUIET = lambda *_: None  # noqa: E731


def run(*overrides: str, epochs: int = 7, checkpoint=None) -> dict:
    cfg = tiny_config("train.lr=0.01", *overrides, epochs=epochs)
    return Trainer(cfg, DATA[0]).fit(checkpoint=checkpoint, log=QUIET)


DATA: list = []


@pytest.fixture(autouse=True)
def _data(tiny_data):
    DATA[:] = [tiny_data]


def losses(result: dict) -> list:
    return [(c["epoch"], c["loss"]) for c in result["curves"]]


def test_every_third_epoch_and_the_last_are_validated_and_training_is_unchanged():
    every = run("train.eval_every=1")
    third = run("train.eval_every=3")
    assert [c["epoch"] for c in third["curves"] if c["valid"]] == [3, 6, 7]
    assert all(c["eval_time_s"] == 0 for c in third["curves"] if not c["valid"])
    assert losses(third) == losses(every)  # validation draws no randomness: the same training
    # the selected epoch is the best of the validated ones, as the every-epoch run scores them
    scores = {c["epoch"]: c["valid"]["ndcg@20"] for c in every["curves"]}
    best = max([3, 6, 7], key=lambda e: (scores[e], -e))
    assert third["best_epoch"] == best
    for c in third["curves"]:
        if c["valid"]:
            assert c["valid"] == every["curves"][c["epoch"] - 1]["valid"]


def test_eval_every_one_is_the_default_bit_for_bit():
    default, explicit = run(), run("train.eval_every=1")
    strip = lambda r: {k: v for k, v in r.items() if k not in ("wall_time_s", "epoch_time_s", "curves", "memory",  # noqa: E731
                                                                 "config", "config_hash")}
    assert strip(default) == strip(explicit)
    assert [(c["valid"], c["loss"], c["weight"]) for c in default["curves"]] == \
        [(c["valid"], c["loss"], c["weight"]) for c in explicit["curves"]]


def test_patience_counts_evaluations():
    # lr 0.5 overshoots: validation stops improving early; patience 2 at cadence 2 is 4 epochs past the best
    r = Trainer(tiny_config("train.lr=0.5", "train.patience=2", "train.eval_every=2", epochs=40), DATA[0]).fit(log=QUIET)
    assert r["stopped_by"] == "patience"
    validated = [c["epoch"] for c in r["curves"] if c["valid"]]
    assert r["epochs_run"] == validated[-1] and r["epochs_run"] % 2 == 0
    assert validated[-1] - r["best_epoch"] == 2 * 2 and r["best_epoch"] in validated


def test_a_resumed_run_keeps_the_cadence(tmp_path, monkeypatch):
    full = run("train.eval_every=2")
    ckpt = tmp_path / "run.ckpt"
    save = Trainer.save_checkpoint

    class Killed(BaseException):
        pass

    def save_then_die(self, path):
        save(self, path)
        if self.epoch == 3:  # between two validations
            raise Killed

    monkeypatch.setattr(Trainer, "save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        run("train.eval_every=2", checkpoint=ckpt)
    monkeypatch.setattr(Trainer, "save_checkpoint", save)
    resumed = run("train.eval_every=2", checkpoint=ckpt)
    assert resumed["best_epoch"] == full["best_epoch"] and resumed["test"] == full["test"]
    assert [c["valid"] for c in resumed["curves"]] == [c["valid"] for c in full["curves"]]


@pytest.mark.parametrize("value", [0, -1, "x"])
def test_a_bad_cadence_is_a_config_error(value):
    with pytest.raises(ConfigError, match=r"^train\.eval_every: "):
        Trainer(tiny_config(f"train.eval_every={value}"), DATA[0])
