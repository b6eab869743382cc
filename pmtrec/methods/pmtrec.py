"""PMTRec: personalised multi-task training (Yang et al., 2024), and its ablation variants.

Per embedding row x (users and items alike) and task k, ``g[x,k]`` is task k's gradient
w.r.t. the row and ``n[x,k] = ||g[x,k]||``. Only the tasks that touch x take part in
x's combination. One step, in this exact order (all vectorised over rows and tasks):

1. **weights** (per row, or per task from batch norms when ``personalized`` is off)::

       w[x,:] = softmax_k( weight_sign * log n~[x,k] / tau )   over the tasks touching x

   ``n~`` is ``n`` (or ``n`` divided by task k's mean norm over the rows it touches in the
   batch when ``norm_by_batch_mean``). With ``personalized`` off the logits come from the
   batch norms ``||G_k||`` (one weight per task) and are renormalised over each row's tasks.
   With ``balance`` *and* ``personalized`` off the weights are uniform.
2. **progressive focus** (rows the main task touches): ``w[x,0] <- (1-b) w[x,0] + b``,
   ``w[x,k>0] <- (1-b) w[x,k]``, with ``b = b(epoch)`` rising from 0 to ``focus_max``.
   With ``focus_rows="all"`` (the default, chosen on validation, see docs/method.md) a row
   outside the main task's batch has its final update scaled by ``1 - b`` (after step 6), so
   ``focus_max = 1`` ends with the main task alone; ``focus_rows="main"`` leaves those rows alone.
3. **directions**: ``d[x,k] = g[x,k] / n[x,k]`` (``balance``) or ``g[x,k]`` (raw).
4. **alignment** (rows the main task touches): an auxiliary direction with
   ``<d[x,k], d[x,0]> < 0`` loses its component along ``d[x,0]``.
5. **combine**: ``c[x] = sum_k w[x,k] d[x,k]``.
6. **magnitude**: ``balance``: ``out[x] = c[x] / ||c[x]|| * m[x]``. With ``magnitude="norms"``
   (the default, chosen on Ciao validation NDCG@20, see docs/method.md) ``m[x] = sum_k n[x,k]``,
   the step the row's tasks would take together if they agreed, so partly conflicting tasks do
   not shrink a row's step; with ``magnitude="sum"`` ``m[x] = ||sum_k g[x,k]||``, the step length
   EW would take on x; with ``magnitude="main"`` ``m[x] = n[x,0]`` (or the mean norm of x's
   tasks when the main task does not touch x). ``balance`` off:
   ``out[x] = T[x] * c[x]`` where ``T[x]`` is the number of tasks touching x, i.e. the
   effective weights ``T[x] w[x,k]`` sum to the number of tasks (the usual convention under
   which uniform weights are EW): ``pmtrec-none`` gives exactly EW's row gradient
   ``sum_k g[x,k]``.

With ``shuffle_rows`` (the ``pmtrec-shuffled`` control, :mod:`pmtrec.methods.controls`) the
weight vectors of step 1 are permuted across the rows the main task touches, within each table
and among rows with the same set of tasks, before step 2; gradients, directions and magnitudes
stay with their rows.

"Touching" means: touched by the task's batch and ``n[x,k] > eps`` (a zero gradient has no direction).
A row touched by the main task alone gets exactly ``g[x,0]`` in every variant. Task-specific
parameters (category embeddings) get their own task's gradient unchanged. See docs/method.md.
"""

from __future__ import annotations

import math

import torch

from pmtrec.methods.base import GradientMethod, StepContext, StepOutput
from pmtrec.methods.registry import register, register_variant

SCHEDULES = ("linear", "cosine")
MAGNITUDES = ("sum", "norms", "main")
FOCUS_ROWS = ("main", "all")


def focus_schedule(epoch: float, focus_max: float, warmup: float, schedule: str = "linear") -> float:
    """Progressive-focus strength b(epoch): 0 at epoch 0, ``focus_max`` at and after ``warmup`` epochs."""
    if warmup <= 0:
        return float(focus_max)
    p = min(max(epoch / warmup, 0.0), 1.0)
    if schedule == "cosine":
        p = 0.5 * (1.0 - math.cos(math.pi * p))
    elif schedule != "linear":
        raise ValueError(f"focus_schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    return float(focus_max) * p


def _masked_softmax(logits: torch.Tensor, mask: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Softmax over the entries where ``mask`` holds (0 elsewhere; all 0 where nothing is masked in)."""
    return torch.softmax(logits.masked_fill(~mask, -math.inf), dim=dim).nan_to_num(0.0)


@register
class PMTRec(GradientMethod):
    """Personalised task weighting + gradient magnitude balancing + task focusing, per embedding row."""

    name = "pmtrec"
    symmetry = "aux"
    label = "PMTRec"
    colour = "#D55E00"
    order = 200
    tunable = {"tau": (0.25, 4.0), "focus_max": (0.0, 1.0), "focus_rows": ("main", "all")}

    def __init__(self, task_names, personalized: bool = True, balance: bool = True, tau: float = 1.0,
                 focus: bool = True, align: bool = True, progressive: bool = True, focus_max: float = 0.5,
                 focus_warmup: float = 10, focus_schedule: str = "linear", weight_sign: int = 1,
                 norm_by_batch_mean: bool = False, magnitude: str = "norms", focus_rows: str = "all",
                 eps: float = 1e-12, shuffle_rows: bool = False) -> None:
        super().__init__(task_names)
        if not (isinstance(tau, (int, float)) and tau > 0):
            raise ValueError(f"tau must be a positive number, got {tau!r}")
        if not (isinstance(focus_max, (int, float)) and 0.0 <= focus_max <= 1.0):
            raise ValueError(f"focus_max must be in [0, 1], got {focus_max!r}")
        if not (isinstance(focus_warmup, (int, float)) and focus_warmup >= 0):
            raise ValueError(f"focus_warmup must be a non-negative number of epochs, got {focus_warmup!r}")
        if focus_schedule not in SCHEDULES:
            raise ValueError(f"focus_schedule must be one of {', '.join(SCHEDULES)}, got {focus_schedule!r}")
        if weight_sign not in (1, -1):
            raise ValueError(f"weight_sign must be 1 or -1, got {weight_sign!r}")
        if magnitude not in MAGNITUDES:
            raise ValueError(f"magnitude must be one of {', '.join(MAGNITUDES)}, got {magnitude!r}")
        if focus_rows not in FOCUS_ROWS:
            raise ValueError(f"focus_rows must be one of {', '.join(FOCUS_ROWS)}, got {focus_rows!r}")
        if not (isinstance(eps, (int, float)) and eps > 0):
            raise ValueError(f"eps must be a positive number, got {eps!r}")
        self.personalized, self.balance = bool(personalized), bool(balance)
        self.tau, self.weight_sign, self.eps = float(tau), int(weight_sign), float(eps)
        self.align = bool(focus and align)
        self.progressive = bool(focus and progressive)
        self.focus_max, self.focus_warmup, self.focus_schedule = float(focus_max), float(focus_warmup), focus_schedule
        self.norm_by_batch_mean = bool(norm_by_batch_mean)
        self.magnitude = magnitude
        self.focus_rows = focus_rows
        self.shuffle_rows = bool(shuffle_rows)

    def focus_strength(self, epoch: float) -> float:
        """b(epoch) of progressive focus (0 when progressive focus is off)."""
        if not self.progressive:
            return 0.0
        return focus_schedule(epoch, self.focus_max, self.focus_warmup, self.focus_schedule)

    def _logits(self, norms: torch.Tensor) -> torch.Tensor:
        return self.weight_sign * torch.log(norms.clamp_min(self.eps)) / self.tau

    def aggregate(self, grads: torch.Tensor, ctx: StepContext) -> StepOutput:
        # Every step below is linear in the task gradients, so the output is sum_k a[k,x] g[x,k]:
        # the coefficients a [K,R] are computed from the per-row Gram matrix [K,K,R] alone, and the
        # [K,R,d] gradients are read once more to combine them (a few passes instead of ~30).
        eps = self.eps
        gram = ctx.row_gram(grads)                                     # [K, K, R], shared with the logger
        norms = torch.diagonal(gram).T.clamp_min(0).sqrt()             # [K, R]
        touched = ctx.touched.to(grads.device)
        active = touched & (norms > eps)
        mask = torch.where(active.any(0, keepdim=True), active, touched)  # [K, R]: tasks taking part
        maskf = mask.to(grads.dtype)
        main = mask[0]                                                 # [R]
        main_only = main & (mask.sum(0) == 1)
        b = self.focus_strength(ctx.epoch)

        batch_w = None
        if self.personalized:
            n = norms
            if self.norm_by_batch_mean:
                mean = (norms * maskf).sum(1, keepdim=True) / maskf.sum(1, keepdim=True).clamp_min(1.0)
                n = norms / mean.clamp_min(eps)
            w = _masked_softmax(self._logits(n), mask)
        else:
            batch_norm = norms.square().sum(1).sqrt()                  # ||G_k|| over all rows, [K]
            present = batch_norm > eps
            if not self.balance:
                logits = torch.zeros_like(batch_norm)
            else:
                if self.norm_by_batch_mean:  # a batch norm over its own batch mean is 1: uniform weights
                    batch_norm = batch_norm / batch_norm.clamp_min(eps)
                logits = self._logits(batch_norm)
            batch_w = _masked_softmax(logits, present)
            w = _masked_softmax(logits[:, None].expand_as(mask), mask)
        if self.shuffle_rows:
            w = shuffle_row_weights(w, mask, ctx.n_user_rows, ctx.step)

        if b > 0:
            mf = main.to(w.dtype)
            w = w * (1.0 - b * mf)           # rows the main task does not touch keep their weights
            w[0] = w[0] + b * mf
            if batch_w is not None:  # mixed only when the main task is in the batch (no host sync)
                mixed = batch_w * (1.0 - b)
                mixed[0] = mixed[0] + b
                batch_w = torch.where(present[0], mixed, batch_w)

        # directions d_k = s_k g_k: unit (balance) or raw, restricted to the row's tasks
        s = maskf / norms.clamp_min(eps) if self.balance else maskf
        a = w * s                                                      # c = sum_k a_k g_k
        if self.align and grads.shape[0] > 1:
            # <d_k, d_0> < 0 on a main-task row: d_k -= (<d_k,d_0>/|d_0|^2) d_0, folded into a_0
            dots = s[1:] * s[0] * gram[1:, 0]                           # [K-1, R]
            sq = (s[0] * s[0] * gram[0, 0]).clamp_min(eps * eps)
            coef = torch.where((dots < 0) & main, dots / sq, torch.zeros_like(dots))
            a = torch.cat([(a[0] - s[0] * (w[1:] * coef).sum(0))[None], a[1:]])

        if self.balance:
            cn = _quad_norm(a, gram)                                   # ||c|| from the Gram matrix
            if self.magnitude == "sum":  # the step length of the plain sum (EW) of the row's gradients
                ref = _quad_norm(maskf, gram)
            elif self.magnitude == "norms":  # the step length if the row's tasks all agreed
                ref = (norms * maskf).sum(0)
            else:
                ref = torch.where(main, norms[0], (norms * maskf).sum(0) / maskf.sum(0).clamp_min(1.0))
            a = a * torch.where(cn > eps, ref / cn.clamp_min(eps), torch.zeros_like(cn))
        else:
            a = a * maskf.sum(0)
        onehot = torch.zeros_like(a)
        onehot[0] = 1.0
        a = torch.where(main_only, onehot, a)                          # exactly g[x,0]
        if b > 0 and self.focus_rows == "all":  # rows outside the main task's batch move (1 - b) as far
            a = torch.where(touched[0], a, a * (1.0 - b))
        out = grads[0] * a[0, :, None]
        for k in range(1, grads.shape[0]):  # K <= 4 tasks; in place, one read of each g_k
            out.addcmul_(grads[k], a[k, :, None])

        row_weights = w.T.detach()                                     # [R, K]
        weights = batch_w if batch_w is not None else row_weights.mean(0)
        return StepOutput(weights=weights.detach(), row_grad=out, row_weights=row_weights)


# Fixed: with the step counter it seeds each step's permutation, so a run is reproducible and a
# resumed run (the trainer checkpoints the step counter) draws the same permutations, with no state.
SHUFFLE_SEED = 0x5EED_0F_F0C5


def shuffle_row_weights(w: torch.Tensor, mask: torch.Tensor, n_user_rows: int, step: int) -> torch.Tensor:
    """``w`` [K, R] with its columns permuted at random among the rows the main task touches.

    Rows are permuted only within a group of the same table (users, items) and the same set of
    participating tasks (``mask``), so every row gets a weight vector over exactly its own tasks;
    the multiset of weight vectors, hence each task's mean weight, is unchanged. Other rows keep
    theirs. Vectorised: one ``randperm`` and two stable sorts, no loop over rows.
    """
    K, R = mask.shape
    gen = torch.Generator(device=w.device).manual_seed(SHUFFLE_SEED + int(step))
    bits = (mask.long() << torch.arange(K, device=w.device)[:, None]).sum(0)       # task set, [R]
    rows = torch.arange(R, device=w.device)
    group = bits + (rows >= n_user_rows).long() * (1 << K)                      # table and task set
    group = torch.where(mask[0], group, (1 << (K + 1)) + rows)                  # others: groups of one
    perm = torch.randperm(R, generator=gen, device=w.device)
    src = perm[torch.argsort(group[perm], stable=True)]   # each group's rows, in random order
    dst = torch.argsort(group, stable=True)               # each group's rows, in place order
    out = torch.empty_like(w)
    out[:, dst] = w[:, src]
    return out


def _quad_norm(a: torch.Tensor, gram: torch.Tensor) -> torch.Tensor:
    """||sum_k a[k,x] g[x,k]|| per row, from the coefficients [K,R] and the Gram matrices [K,K,R]."""
    return (a[:, None] * gram * a[None, :]).sum((0, 1)).clamp_min(0).sqrt()


# The ablations: each switches off one component (labels and colours are the report's).
register_variant("pmtrec-no-personal", "pmtrec", label="w/o personalization", colour="#E69F00", personalized=False)
register_variant("pmtrec-no-focus", "pmtrec", label="w/o focus", colour="#CC79A7", focus=False)
register_variant("pmtrec-no-align", "pmtrec", label="w/o alignment", colour="#56B4E9", align=False)
register_variant("pmtrec-no-progressive", "pmtrec", label="w/o progressive", colour="#009E73", progressive=False)
register_variant("pmtrec-no-balance", "pmtrec", label="w/o balance", colour="#8C510A", balance=False)
register_variant("pmtrec-none", "pmtrec", label="w/o all three", colour="#555555", personalized=False,
                 balance=False, focus=False)
