"""MostPop: every user gets the items ranked by training popularity (no training, no embeddings)."""

from __future__ import annotations

import numpy as np
import torch

from pmtrec.errors import PmtrecError
from pmtrec.interactions import _as_pairs, _pair_keys
from pmtrec.methods.registry import BaselineModel, register


def mostpop_scores(train: np.ndarray, n_items: int) -> torch.Tensor:
    """Popularity score per item: its number of distinct training users, float32 ``(n_items,)``.

    Evaluated by :func:`pmtrec.training.run.run_baseline_model` (the scores expanded per user).
    """
    n_items = int(n_items)
    if n_items < 1:
        raise PmtrecError(f"n_items must be positive, got {n_items}")
    pairs = _as_pairs("train", train, None, n_items)
    if len(pairs) == 0:
        return torch.zeros(n_items, dtype=torch.float32)
    items = _pair_keys(pairs, n_items) % n_items
    return torch.as_tensor(np.bincount(items, minlength=n_items), dtype=torch.float32)


@register
class MostPop(BaselineModel):
    """Popularity ranking (no training): items by their number of distinct training users."""

    name = "mostpop"
    label = "MostPop"
    colour = "#BBBBBB"
    order = 0

    def item_scores(self, train, n_items: int):
        return mostpop_scores(train, n_items)
