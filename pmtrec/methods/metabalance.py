"""MetaBalance: the recommendation-specific gradient-magnitude balancing baseline."""

from __future__ import annotations

from typing import Sequence

import torch

from pmtrec.methods.base import GradientMethod, StepContext, StepOutput
from pmtrec.methods.registry import register

STRATEGIES = ("all", "larger", "smaller")


@register
class MetaBalance(GradientMethod):
    """MetaBalance (He et al., WWW 2022): auxiliary gradients rescaled toward the main task's magnitude.

    For each auxiliary task k and each shared parameter tensor (the user table and the item table,
    as the official optimizer works per parameter tensor):
    ``g_k <- g_k (relax * m_0 / m_k + (1 - relax))`` where ``m_k <- beta m_k + (1 - beta) ||g_k||``
    are moving averages of the gradient norms (beta = 0.9, starting at 0 as the official code,
    so the first step's ratio is exactly ``||g_0|| / ||g_k||``); relax factor ``relax`` = 0.7.
    The update is ``g_0 + sum_k g_k`` (adjusted). ``strategy``: ``all`` adapts every auxiliary
    gradient (the paper's best, "C"), ``larger`` only those whose moving-average norm exceeds the
    main's ("A": shrink dominating tasks), ``smaller`` only those below it ("B": enlarge).
    The reported weight of task k is ``||adjusted g_k|| / ||g_k||`` (1 for the main task).
    Each task's own parameters keep their gradient (only shared parameters are balanced).
    """

    name = "metabalance"
    symmetry = "aux"
    label = "MetaBalance"
    colour = "#6699CC"
    order = 180
    stateful = True
    tunable = {"relax": (0.5, 0.9)}

    def __init__(self, task_names: Sequence[str], relax: float = 0.7, beta: float = 0.9,
                 strategy: str = "all") -> None:
        super().__init__(task_names)
        if not 0 <= relax <= 1:
            raise ValueError(f"relax must be in [0, 1], got {relax!r}")
        if not 0 <= beta < 1:
            raise ValueError(f"beta must be in [0, 1), got {beta!r}")
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
        self.relax, self.beta, self.strategy = float(relax), float(beta), strategy
        self.register_buffer("norm_ema", torch.zeros(self.n_tasks, 2))  # [task, (user table, item table)]

    @torch.no_grad()
    def aggregate(self, grads: torch.Tensor, ctx: StepContext) -> StepOutput:
        nu = ctx.n_user_rows
        norms = torch.stack([grads[:, :nu].flatten(1).norm(dim=1), grads[:, nu:].flatten(1).norm(dim=1)], dim=1)
        self.norm_ema.mul_(self.beta).add_(norms.to(self.norm_ema), alpha=1 - self.beta)
        m = self.norm_ema
        factor = self.relax * m[:1] / m.clamp_min(1e-12) + (1 - self.relax)  # [K, 2]
        if self.strategy == "larger":
            factor = torch.where(m > m[:1], factor, torch.ones_like(factor))
        elif self.strategy == "smaller":
            factor = torch.where(m < m[:1], factor, torch.ones_like(factor))
        factor[0] = 1.0
        factor = factor.to(grads)
        # per-row scale: user rows take the user-table factor, item rows the item-table factor
        row_factor = torch.cat([factor[:, :1].expand(-1, nu), factor[:, 1:].expand(-1, grads.shape[1] - nu)], dim=1)
        adjusted = grads * row_factor[:, :, None]
        before = norms.to(grads).norm(dim=1)
        after = adjusted.flatten(1).norm(dim=1)
        weights = torch.where(before > 0, after / before.clamp_min(1e-30), torch.ones_like(before))
        weights[0] = 1.0
        return StepOutput(weights=weights, row_grad=adjusted.sum(0))
