"""The method interface: how the task losses or task gradients of one step are combined.

A method is small and sees only what one step gives it (a :class:`StepContext`):
the per-task losses, on demand the per-task gradients with respect to the embedding
rows the batch touched, which task touched which row, and the schedule (epoch, step). It returns a :class:`StepOutput`; the trainer
owns the loop, the optimizer and the parameters.

Two families share the interface:

* :class:`LossWeighting` methods return task weights; the trainer backpropagates
  ``sum_k w_k L_k`` once (plus the method's own ``extra_loss``, e.g. UW's regulariser).
* :class:`GradientMethod` methods read ``ctx.grads()`` (tasks x rows x dim) and return
  the combined row gradient; each task's own parameters (e.g. category embeddings)
  get that task's gradient scaled by ``task_param_scale`` (1 unless the method says).

Methods are ``nn.Module`` so their state (learned log-variances, moving averages)
moves with ``.to(device)`` and is checkpointed with ``state_dict``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, ClassVar, Sequence

import torch
from torch import nn


@dataclass
class RowGradients:
    """The trainer's side of a step: where the per-task row gradients come from. A method never
    reads it; it asks :meth:`StepContext.grads` instead."""

    rows: torch.Tensor                     # [R, d] leaf: the touched user rows, then item rows
    row_ids: torch.Tensor                  # [R] id of each row within its table
    task_params: list[list[nn.Parameter]]  # each task's own parameters
    # The trainer's fast path: (grads [K, R, d], per-task parameter gradients) from one backward pass.
    # Without it, the gradients take one autograd pass per task w.r.t. the leaf ``rows``.
    compute: Callable[[], tuple[torch.Tensor, list[list[torch.Tensor]]]] | None = None
    grads: torch.Tensor | None = None
    param_grads: list[list[torch.Tensor]] | None = None

    def ensure(self, losses: torch.Tensor) -> None:
        if self.grads is None and self.compute is not None:
            self.grads, self.param_grads = self.compute()
        if self.grads is None:
            rows_grads, param_grads = [], []
            last = len(losses) - 1
            for k in range(len(losses)):
                inputs = [self.rows, *self.task_params[k]]
                out = torch.autograd.grad(losses[k], inputs, retain_graph=k < last, allow_unused=True)
                rows_grads.append(out[0] if out[0] is not None else torch.zeros_like(self.rows))
                param_grads.append([g if g is not None else torch.zeros_like(p)
                                    for g, p in zip(out[1:], self.task_params[k])])
            self.grads = torch.stack(rows_grads)
            self.param_grads = param_grads


@dataclass
class StepContext:
    """What a method may see of one training step: the task losses, the per-task gradients on
    demand, which rows each task touched, and the schedule. The trainer's own state (the rows,
    the tasks' parameters, its fast path) stays in ``source``."""

    losses: torch.Tensor                 # [K] task losses, attached to the autograd graph
    task_names: tuple[str, ...]          # task 0 is the main task
    touched: torch.Tensor                # [K, R] bool: task k's loss depends on row r
    n_user_rows: int                     # rows [0, n_user_rows) are users, the rest items
    epoch: int                           # 0-based
    epochs: int                          # planned number of epochs
    step: int                            # global step counter, 0-based
    recompute_losses: Callable[[], torch.Tensor] | None = None  # [K] losses at current params, same batch
    touch_counts_fn: Callable[[], torch.Tensor] | None = field(default=None, repr=False)
    source: RowGradients | None = field(default=None, repr=False)
    _touch_counts: torch.Tensor | None = field(default=None, repr=False)
    _row_gram: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, repr=False)

    @classmethod
    def for_rows(cls, losses, task_names, rows, n_user_rows, row_ids, touched, task_params, epoch, epochs, step,
                 recompute_losses=None, grads_fn=None, touch_counts=None) -> "StepContext":
        """A context whose gradients are taken w.r.t. the leaf ``rows`` (or by ``grads_fn``);
        ``touch_counts`` is a callable that counts them when a method first asks."""
        return cls(losses=losses, task_names=tuple(task_names), touched=touched, n_user_rows=n_user_rows,
                   epoch=epoch, epochs=epochs, step=step, recompute_losses=recompute_losses,
                   touch_counts_fn=touch_counts, source=RowGradients(rows, row_ids, task_params, grads_fn))

    @property
    def n_tasks(self) -> int:
        return len(self.task_names)

    @property
    def touch_counts(self) -> torch.Tensor | None:
        """[K, R] how many of task k's field entries reference row r, computed on first use; None when
        the trainer did not provide them."""
        if self._touch_counts is None and self.touch_counts_fn is not None:
            self._touch_counts = self.touch_counts_fn()
        return self._touch_counts

    @touch_counts.setter
    def touch_counts(self, value: torch.Tensor | None) -> None:
        self._touch_counts = value

    @property
    def row_ids(self) -> torch.Tensor | None:
        """[R] id of each row within its table (rows [0, n_user_rows) users), e.g. for per-entity state."""
        return None if self.source is None else self.source.row_ids

    def grads(self) -> torch.Tensor:
        """Per-task gradients w.r.t. the touched rows: [K, R, d] (zero where a task does not touch a row)."""
        self.source.ensure(self.losses)
        return self.source.grads

    def param_grads(self) -> list[list[torch.Tensor]]:
        """Each task's gradient w.r.t. its own parameters (computed with :meth:`grads`)."""
        self.grads()
        assert self.source.param_grads is not None
        return self.source.param_grads

    @property
    def grads_computed(self) -> bool:
        return self.source is not None and self.source.grads is not None

    def row_gram(self, grads: torch.Tensor | None = None) -> torch.Tensor:
        """Per-row Gram matrices [K, K, R] (entry <g[x,k], g[x,j]>) of ``grads`` (default ``grads()``), cached."""
        grads = self.grads() if grads is None else grads
        if self._row_gram is None or self._row_gram[0] is not grads:
            self._row_gram = (grads, row_gram(grads))
        return self._row_gram[1]

    def task_gram(self) -> torch.Tensor:
        """Gram matrix [K, K] of the flattened per-task gradients (from the row Grams when cached)."""
        grads = self.grads()
        if self._row_gram is not None and self._row_gram[0] is grads:
            return self._row_gram[1].sum(-1)
        flat = grads.flatten(1)
        return flat @ flat.T


def row_gram(grads: torch.Tensor) -> torch.Tensor:
    """Per-row Gram matrices of task gradients [K, R, d]: [K, K, R] with entry <g[x,k], g[x,j]>."""
    g = grads.transpose(0, 1)                                          # [R, K, d]
    return torch.bmm(g, g.transpose(1, 2)).permute(1, 2, 0)            # one batched pass over the gradients


@dataclass
class StepOutput:
    weights: torch.Tensor                       # [K] task weights used (detached), for logging
    loss: torch.Tensor | None = None            # scalar to backpropagate (loss weighting)
    row_grad: torch.Tensor | None = None        # [R, d] combined row gradient (gradient methods)
    task_param_scale: torch.Tensor | None = None  # [K] scale of each task's own-parameter gradient
    row_weights: torch.Tensor | None = None     # [R, K] per-row task weights (personalised methods)


class Method(nn.Module):
    """Base class of every multi-task method. Subclasses set ``name`` and the catalogue metadata.

    The metadata (read by :mod:`pmtrec.methods.registry`, hence by the CLI, the workflow and the
    report) is class attributes: ``label``, ``colour`` (hex) and ``order`` for the report,
    ``family``, ``implementation``, ``stateful`` (keeps state across steps, checkpointed), ``task_set`` ("all": every
    task the dataset has; "main": the main task alone) and ``tunable`` (hyperparameter -> the range
    a study's grid should search: ``(low, high)`` for numbers, the choices for strings).
    """

    name: ClassVar[str]
    family: ClassVar[str] = "loss weighting"
    label: ClassVar[str] = ""
    colour: ClassVar[str] = ""
    order: ClassVar[int] = 1000
    stateful: ClassVar[bool] = False
    task_set: ClassVar[str] = "all"
    tunable: ClassVar[dict[str, tuple]] = {}
    implementation: ClassVar[str] = "hand"  # or the library it wraps, for docs/methods.md
    # Which task permutations leave the update unchanged (the weights permuted with the tasks):
    # "all"; "aux" (the auxiliary tasks only: the main task is special); "none" (order-dependent
    # by design, e.g. PCGrad's sequential projections). Checked by tests/test_methods_baselines.py.
    symmetry: ClassVar[str] = "all"
    uses_grads: ClassVar[bool] = False

    def __init__(self, task_names: Sequence[str]) -> None:
        super().__init__()
        self.task_names = tuple(task_names)

    @property
    def n_tasks(self) -> int:
        return len(self.task_names)

    def step(self, ctx: StepContext) -> StepOutput:
        raise NotImplementedError

    def after_step(self, ctx: StepContext) -> None:
        """Called after the optimizer step (e.g. FAMO reads the losses at the new parameters)."""

    def end_epoch(self, epoch: int, mean_losses: torch.Tensor) -> None:
        """Called once per epoch with the epoch's mean task losses (e.g. DWA)."""


class LossWeighting(Method):
    """Combines the task losses with weights; one backward pass per step."""

    def weights(self, ctx: StepContext) -> torch.Tensor:
        raise NotImplementedError

    def extra_loss(self, ctx: StepContext) -> torch.Tensor | None:
        return None

    def step(self, ctx: StepContext) -> StepOutput:
        w = self.weights(ctx)
        loss = (w * ctx.losses).sum()
        extra = self.extra_loss(ctx)
        if extra is not None:
            loss = loss + extra
        return StepOutput(weights=w.detach(), loss=loss)


class GradientMethod(Method):
    """Combines per-task row gradients [K, R, d] into one row gradient [R, d]."""

    family = "gradient"
    uses_grads = True

    def aggregate(self, grads: torch.Tensor, ctx: StepContext) -> StepOutput:
        raise NotImplementedError

    def step(self, ctx: StepContext) -> StepOutput:
        return self.aggregate(ctx.grads(), ctx)
