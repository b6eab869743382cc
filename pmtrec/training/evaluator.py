"""The evaluation protocol, the same code for every method and baseline model.

Validation ranks every item for every user with the training interactions masked; the test
split masks training and validation interactions. Metrics are reported overall and per user
activity group (``eval.groups``).
"""

from __future__ import annotations

import numpy as np
import torch

from pmtrec import evaluate as ev

SPLITS = ("valid", "test")


class Evaluator:
    """Valid/test full-ranking evaluation of a score function ``users -> [n, n_items]``."""

    def __init__(self, cfg: dict, data, device: torch.device) -> None:
        ecfg = cfg["eval"]
        self.data, self.device = data, device
        self.ks = tuple(int(k) for k in ecfg["ks"])
        self.batch_size = int(ecfg["batch_size"])
        self.user_groups = ev.activity_groups(data.train, data.n_users, int(ecfg["groups"]), column=0)
        self.item_groups = ev.activity_groups(data.train, data.n_items, int(ecfg["groups"]), column=1)
        self.train_valid = np.concatenate([data.train, data.valid])

    def evaluate(self, score, split: str) -> ev.EvalResult:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        targets = self.data.valid if split == "valid" else self.data.test
        exclude = self.data.train if split == "valid" else self.train_valid
        with torch.no_grad():
            return ev.evaluate_ranking(score, self.data.n_users, self.data.n_items, targets, exclude, ks=self.ks,
                                       batch_size=self.batch_size, device=self.device,
                                       user_groups=self.user_groups)
