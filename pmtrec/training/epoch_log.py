"""The per-epoch log of a run: mean losses and weights, gradient cosines, per-group row weights."""

from __future__ import annotations

from typing import Any

import torch

from pmtrec.methods import StepContext
from pmtrec.training.rows import StepBatch


class EpochLog:
    """Per-epoch accumulators, kept on the device so the hot path never syncs.

    ``user_groups`` / ``item_groups`` give every user / item its activity group (0 = least
    active); per-row task weights are summed per group as they arrive, so a step writes into a
    few cached group rows instead of scattering into a table-sized accumulator.
    """

    def __init__(self, n_tasks: int, user_groups, item_groups, device: torch.device) -> None:
        z = lambda *s: torch.zeros(*s, device=device, dtype=torch.float64)  # noqa: E731
        self.steps = 0
        self.loss_sum, self.weight_sum = z(n_tasks), z(n_tasks)
        self.cos_sum, self.cos_steps = z(n_tasks, n_tasks), 0
        self.user_group = torch.as_tensor(user_groups, dtype=torch.long, device=device)  # no copy if already there
        self.item_group = torch.as_tensor(item_groups, dtype=torch.long, device=device)
        n_groups = lambda g: int(g.max()) + 1 if len(g) else 0  # noqa: E731
        # per group: [summed weights | visits counted]
        self.user_acc = z(n_groups(self.user_group), 2 * n_tasks)
        self.item_acc = z(n_groups(self.item_group), 2 * n_tasks)
        self.has_rows = False

    def add(self, ctx: StepContext, out, batch: StepBatch) -> None:
        self.steps += 1
        self.loss_sum += ctx.losses.detach()
        self.weight_sum += out.weights
        if ctx.grads_computed:
            gram = ctx.task_gram()  # cosines from the K x K Gram (free when the method built row Grams)
            norm = gram.diagonal().clamp_min(1e-24).sqrt()
            self.cos_sum += gram / (norm[:, None] * norm[None, :])
            self.cos_steps += 1
        if out.row_weights is not None:
            # Like-for-like: task k's weight counts only on rows that the main task and task k both
            # touch (the main task's on rows shared with any other task); otherwise how often a task
            # visits a row, not how the method weighs it, would drive the group means.
            self.has_rows = True
            t = ctx.touched
            both = torch.cat([(t[0] & t[1:].any(0))[None], t[0] & t[1:]]).T.double()  # [R, K]
            acc = torch.cat([out.row_weights.detach().double() * both, both], dim=1)  # [R, 2K]
            n_u = ctx.n_user_rows
            self.user_acc.index_add_(0, self.user_group[batch.user_ids], acc[:n_u])
            self.item_acc.index_add_(0, self.item_group[batch.item_ids], acc[n_u:])

    def summary(self, task_names: tuple[str, ...]) -> dict:
        n = max(self.steps, 1)
        out: dict[str, Any] = {
            "loss": dict(zip(task_names, (self.loss_sum / n).tolist())),
            "weight": dict(zip(task_names, (self.weight_sum / n).tolist())),
        }
        if self.cos_steps:
            cos = (self.cos_sum / self.cos_steps).cpu().numpy()
            out["grad_cosine"] = {f"{a}|{b}": float(cos[i, j]) for i, a in enumerate(task_names)
                                  for j, b in enumerate(task_names) if i < j}
        if self.has_rows:
            out["row_weight_by_user_group"] = _group_means(self.user_acc, task_names)
            out["row_weight_by_item_group"] = _group_means(self.item_acc, task_names)
        return out


def _group_means(acc: torch.Tensor, task_names) -> dict:
    """Mean per-row weight of each task per group, over the visits counted (``acc`` = [sums | counts])."""
    K = len(task_names)
    mean = (acc[:, :K] / acc[:, K:].clamp_min(1)).cpu().numpy()
    return {str(i): dict(zip(task_names, mean[i].tolist())) for i in range(len(mean))}
