"""Controls that say what PMTRec's gain is made of (issue 18): each keeps one part of PMTRec.

* ``static-schedule``: EW with the auxiliary losses' weight ``aux_weight * (1 - b(t))``, ``b(t)``
  PMTRec's progressive-focus schedule, the same for every row. At ``focus_max = 0`` and
  ``aux_weight = 1`` it is EW exactly. If it matches PMTRec, the schedule is the gain.
* ``pmtrec-shuffled``: PMTRec with each step's per-row weight vectors permuted across the rows
  the main task touches (``shuffle_rows``, see :func:`pmtrec.methods.pmtrec.shuffle_row_weights`):
  the same weights on the wrong rows. If it matches PMTRec, personalisation does not matter.

See docs/method.md ("Controls").
"""

from __future__ import annotations

import inspect
from typing import Sequence

import torch

from pmtrec.methods.base import LossWeighting, StepContext
from pmtrec.methods.pmtrec import SCHEDULES, PMTRec
from pmtrec.methods.pmtrec import focus_schedule as schedule_b  # the parameter shadows the name
from pmtrec.methods.registry import register, register_variant


def _pmtrec_default(name: str):
    """PMTRec's own default, read from its signature so that the control follows it."""
    return inspect.signature(PMTRec.__init__).parameters[name].default


@register
class StaticSchedule(LossWeighting):
    """EW with the auxiliary weight scaled by 1 - b(t), PMTRec's progressive-focus schedule (a control).

    ``L = L_0 + aux_weight * (1 - b(t)) * sum_{k>=1} L_k``, with ``b(t)`` =
    :func:`~pmtrec.methods.pmtrec.focus_schedule` at the 0-based epoch (as PMTRec reads it) and
    the same ``focus_max``, ``focus_warmup`` and ``focus_schedule``. EW sums the losses, so
    ``focus_max = 0`` and ``aux_weight = 1`` give EW's loss exactly.
    """

    name = "static-schedule"
    symmetry = "aux"
    label = "EW + schedule"
    colour = "#DDAA33"
    order = 208  # with PMTRec's ablations: it is one of its controls
    tunable = {"aux_weight": (0.1, 2.0), "focus_max": (0.0, 1.0)}

    def __init__(self, task_names: Sequence[str], aux_weight: float = 1.0,
                 focus_max: float = _pmtrec_default("focus_max"),
                 focus_warmup: float = _pmtrec_default("focus_warmup"),
                 focus_schedule: str = _pmtrec_default("focus_schedule")) -> None:
        super().__init__(task_names)
        if isinstance(aux_weight, bool) or not (isinstance(aux_weight, (int, float)) and aux_weight >= 0):
            raise ValueError(f"aux_weight must be a non-negative number, got {aux_weight!r}")
        if isinstance(focus_max, bool) or not (isinstance(focus_max, (int, float)) and 0.0 <= focus_max <= 1.0):
            raise ValueError(f"focus_max must be in [0, 1], got {focus_max!r}")
        if isinstance(focus_warmup, bool) or not (isinstance(focus_warmup, (int, float)) and focus_warmup >= 0):
            raise ValueError(f"focus_warmup must be a non-negative number of epochs, got {focus_warmup!r}")
        if focus_schedule not in SCHEDULES:
            raise ValueError(f"focus_schedule must be one of {', '.join(SCHEDULES)}, got {focus_schedule!r}")
        self.aux_weight, self.focus_max, self.focus_warmup = float(aux_weight), float(focus_max), float(focus_warmup)
        self.focus_schedule = focus_schedule

    def aux_factor(self, epoch: float) -> float:
        """The auxiliary tasks' weight at ``epoch``: ``aux_weight * (1 - b(epoch))``."""
        return self.aux_weight * (1.0 - schedule_b(epoch, self.focus_max, self.focus_warmup, self.focus_schedule))

    def weights(self, ctx: StepContext) -> torch.Tensor:
        w = torch.full((ctx.n_tasks,), self.aux_factor(ctx.epoch), device=ctx.losses.device)
        w[0] = 1.0
        return w


register_variant("pmtrec-shuffled", "pmtrec", label="shuffled weights", colour="#EE3377", order=209,
                 shuffle_rows=True)
