"""The two reference points: the main task alone, and the equal-weight sum of all tasks."""

from __future__ import annotations

import torch

from pmtrec.methods.base import LossWeighting, StepContext
from pmtrec.methods.registry import register


@register
class Single(LossWeighting):
    """Main task only (weight 1 on task 0, 0 elsewhere): the no-multi-task baseline."""

    name = "single"
    symmetry = "aux"
    label = "Single-task"
    colour = "#777777"
    order = 10
    task_set = "main"

    def weights(self, ctx: StepContext) -> torch.Tensor:
        w = torch.zeros(ctx.n_tasks, device=ctx.losses.device)
        w[0] = 1.0
        return w


@register
class EqualWeight(LossWeighting):
    """EW: the plain sum of the task losses."""

    name = "ew"
    label = "EW"
    colour = "#332288"
    order = 20

    def weights(self, ctx: StepContext) -> torch.Tensor:
        return torch.ones(ctx.n_tasks, device=ctx.losses.device)
