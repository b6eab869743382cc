"""One run, whatever its kind: a trained method, or a baseline model that only ranks."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from pmtrec.errors import ConfigError
from pmtrec.training.evaluator import Evaluator
from pmtrec.training.per_user import write_per_user
from pmtrec.training.results import result_record
from pmtrec.training.trainer import Trainer, resolve_device


def run_baseline_model(cfg: dict, data, model, per_user: str | Path | None = None) -> dict:
    """A baseline model (:class:`pmtrec.methods.BaselineModel`): one fixed ranking for every user.
    ``per_user``: see :func:`train`."""
    t0 = time.perf_counter()
    device = resolve_device(cfg["train"]["device"])
    scores = model.item_scores(data.train, data.n_items).to(device)
    evaluator = Evaluator(cfg, data, device)

    def score(users: torch.Tensor) -> torch.Tensor:
        return scores.expand(len(users), -1)

    valid, test = evaluator.evaluate(score, "valid"), evaluator.evaluate(score, "test")
    if per_user is not None:
        write_per_user(per_user, test)
    return result_record(cfg, data, valid, test, best_epoch=0, history=[], device=device, task_names=("rec",),
                         wall_time=time.perf_counter() - t0)


def train(cfg: dict, data, checkpoint: str | Path | None = None, log=None, notice=None,
          embeddings: str | Path | None = None, per_user: str | Path | None = None) -> dict:
    """Train (or, for a baseline model, just rank) and return the result record.

    ``log`` and ``notice``: see :meth:`Trainer.fit` (default: the ``pmtrec.training`` logger).
    ``embeddings``: a path for the best-epoch tables (:mod:`pmtrec.embeddings`), recorded in the
    result; a baseline model has none (an error if asked for). ``per_user``: a path for the
    best epoch's per-user test metrics (:mod:`pmtrec.training.per_user`; the paired user-level tests).
    """
    from pmtrec.methods import MODELS

    name = cfg["train"]["method"]
    if name in MODELS:
        if embeddings is not None:
            raise ConfigError(f"--embeddings: '{name}' is a baseline model without embeddings")
        if cfg["train"].get("method_params"):
            raise ConfigError(f"train.method_params: '{name}' is a baseline model without hyperparameters")
        return run_baseline_model(cfg, data, MODELS[name](), per_user=per_user)
    trainer = Trainer(cfg, data)
    result = trainer.fit(checkpoint=checkpoint, log=log, notice=notice)
    if per_user is not None:
        write_per_user(per_user, trainer.test_result)
    if embeddings is not None:  # fit() leaves the best epoch's tables in the model
        from pmtrec.embeddings import write_embeddings

        result["embeddings"] = write_embeddings(embeddings, trainer.model.user, trainer.model.item)
    return result
