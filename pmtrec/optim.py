"""Row-sparse ("lazy") Adam for the embedding tables: only the rows a step touched are updated.

It is ``torch.optim.SparseAdam``'s update (moments and parameters change only on the given rows;
bias correction from the global step count), taking the row ids and the [R, d] row gradient
directly. Written by hand because SparseAdam needs a sparse COO gradient, whose construction and
sparse arithmetic cost more on CPU than the dense update it replaces (measured: 1.06-1.5x slower
than dense Adam at 5k-85k rows); here a step is a few gathers and scatters over the R touched rows.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch


class RowAdam(torch.optim.Optimizer):
    """Lazy Adam over whole-row updates. Call :meth:`step_rows` with ``[(ids, grad), ...]``, one per parameter.

    ``ids`` must be unique (the trainer's deduplicated row ids); ``grad`` is [len(ids), d]. A third
    element, the parameter's current rows at ``ids`` (e.g. the forward pass's gather), spares the
    update one random-access pass over the table.
    """

    def __init__(self, params: Iterable[torch.Tensor], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        if not lr >= 0:
            raise ValueError(f"lr must be non-negative, got {lr!r}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"betas must be in [0, 1), got {betas!r}")
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    def step(self, closure=None):  # noqa: D102 - rows come through step_rows
        raise RuntimeError("RowAdam is stepped with step_rows([(ids, grad), ...]), not step()")

    @torch.no_grad()
    def step_rows(self, rows: list[tuple[torch.Tensor, ...]]) -> None:
        params = [p for group in self.param_groups for p in group["params"]]
        if len(rows) != len(params):
            raise ValueError(f"step_rows needs one (ids, grad) per parameter ({len(params)}), got {len(rows)}")
        it = iter(rows)
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                ids, grad, *current = next(it)
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float64)
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                step = float(state["step"])
                if len(ids) == 0:
                    continue
                m = state["exp_avg"].index_select(0, ids).lerp_(grad, 1.0 - beta1)
                v = state["exp_avg_sq"].index_select(0, ids).mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
                state["exp_avg"].index_copy_(0, ids, m)
                state["exp_avg_sq"].index_copy_(0, ids, v)
                step_size = group["lr"] * math.sqrt(1.0 - beta2 ** step) / (1.0 - beta1 ** step)
                # ids are unique, so the update is gather - subtract - write back; on CPU index_add_
                # with alpha != 1 loops row by row (measured 5.3 ms against 0.7 ms, 20k rows of a 1.35M-row table)
                update = m.div_(v.sqrt_().add_(group["eps"]))
                old = current[0] if current else p.index_select(0, ids)
                p.index_copy_(0, ids, torch.sub(old, update, alpha=step_size))
