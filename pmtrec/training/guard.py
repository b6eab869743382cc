"""The non-finite guard: a non-finite task loss or gradient stops the run, or skips the batch.

A one-line :class:`TrainingError` names the method, task, epoch and batch; with
``train.on_nonfinite: skip`` the batch is skipped instead (counted in the result's
``skipped_batches``). The check runs within every step on CPU; on CUDA, in ``stop`` mode, it is
accumulated on the device (:class:`NonFiniteFlags`) and read once per epoch (no per-step sync),
so the error names the first bad batch but is raised at the end of its epoch.
"""

from __future__ import annotations

import torch

from pmtrec.errors import TrainingError
from pmtrec.methods import StepContext

ON_NONFINITE = ("stop", "skip")


def _all_finite(t: torch.Tensor) -> bool:
    """Every entry finite. A finite sum settles it in one pass (a non-finite entry makes the sum
    inf or nan); only a non-finite sum, which finite entries can also give by overflow, is checked
    entry by entry."""
    return bool(torch.isfinite(t.sum())) or bool(torch.isfinite(t).all())


class NonFiniteChecks:
    """The trainer's per-step checks (a mixin: reads ``tasks``, ``method``, ``task_names``,
    ``on_nonfinite``, ``epoch`` and the skip counters of the trainer)."""

    def _other_grads(self) -> list[tuple[str, torch.Tensor]]:
        """The gradients of the tasks' and the method's own parameters, as the optimizers see them."""
        out = [(f"parameters of task {t.name}", p.grad) for t in self.tasks for p in t.parameters()]
        out += [(f"parameters of method '{self.method.name}'", p.grad) for p in self.method.parameters()]
        return [(name, g) for name, g in out if g is not None]

    def _grads_finite(self, row_grad: torch.Tensor) -> torch.Tensor:
        """A 0-d bool tensor on the device (no sync): every gradient of this step is finite."""
        checks = [torch.isfinite(row_grad).all()] + [torch.isfinite(g).all() for _, g in self._other_grads()]
        return torch.stack(checks).all()

    def _nonfinite_grads(self, row_grad: torch.Tensor, ctx: StepContext) -> str | None:
        """None when every gradient of the step is finite, else what is not (host check)."""
        if _all_finite(row_grad):
            bad = [name for name, g in self._other_grads() if not _all_finite(g)]
            return f"non-finite gradient of the {', '.join(dict.fromkeys(bad))}" if bad else None
        what = "non-finite combined row gradient"
        if ctx.grads_computed:  # which tasks' own row gradients were already bad
            G = ctx.grads().detach()
            bad = [n for k, n in enumerate(self.task_names) if not bool(torch.isfinite(G[k]).all())]
            what += (f" (per-task gradient of {', '.join(bad)} non-finite)" if bad
                     else " (every per-task gradient finite: the method's combination is not)")
        else:
            what += " (every task loss finite)"
        return what

    def _nonfinite(self, what: str, batch_no: int) -> None:
        """Stop (raise) or count the skipped batch, per ``train.on_nonfinite``."""
        where = f"with method '{self.method.name}' at epoch {self.epoch + 1}, batch {batch_no + 1}"
        if self.on_nonfinite == "skip":
            self.skipped_batches += 1
            self._epoch_skipped += 1
            return
        raise TrainingError(f"{what} {where}; no result written (train.on_nonfinite=skip skips such batches)")


class NonFiniteFlags:
    """Device-side record of the first step of an epoch with a non-finite loss or gradient.

    Updated without a host sync (on CUDA, in ``on_nonfinite: stop`` mode); read once per epoch.
    """

    def __init__(self, n_tasks: int, device: torch.device) -> None:
        self.first = torch.full((), -1, dtype=torch.long, device=device)
        self.tasks = torch.zeros(n_tasks, dtype=torch.bool, device=device)
        self.grad = torch.zeros((), dtype=torch.bool, device=device)

    def update(self, losses: torch.Tensor, grads_finite: torch.Tensor, batch_no: int) -> None:
        loss_bad = ~torch.isfinite(losses)
        grad_bad = ~grads_finite
        new = (loss_bad.any() | grad_bad) & (self.first < 0)
        self.first = torch.where(new, torch.full_like(self.first, batch_no), self.first)
        self.tasks |= new & loss_bad
        self.grad |= new & grad_bad

    def raise_if_bad(self, task_names: tuple[str, ...], method: str, epoch: int) -> None:
        first = int(self.first)
        if first < 0:
            return
        bad = [n for n, b in zip(task_names, self.tasks.tolist()) if b]
        what = f"non-finite loss in task(s) {', '.join(bad)}" if bad else "non-finite gradient (every task loss finite)"
        raise TrainingError(f"{what} with method '{method}' at epoch {epoch + 1}, batch {first + 1} (detected at "
                            "the end of the epoch on CUDA); no result written (train.on_nonfinite=skip skips "
                            "such batches)")
