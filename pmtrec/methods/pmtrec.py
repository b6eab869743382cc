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

**Second-round switches** (issue 19; each default is the behaviour above, bit for bit). The norm
fed to step 1 is built in this order: ``norms="per_sample"`` divides ``n[x,k]`` by ``c[x,k]``, how
many of task k's field entries reference x in the step (``ctx.touch_counts``), so the weight says how
badly the task fits the entity, not how often it was visited; then ``norm_by_batch_mean``; then
``memory="ema"`` replaces it by a persistent per-entity average ``m[id,k] <- beta m + (1-beta) n``
(updated where task k takes part, the first touch sets ``m = n``; ``memory_pool``: one average per
task and table instead, a MetaBalance-like global rule). Steps 3-6 keep the true norms ``n``.
``weighting`` picks step 1's rule: ``"log_norms"`` (above); ``"softmax_norms"``:
``w = softmax_k(weight_sign * p[x,k] / tau)``, ``p[x,k] = n[x,k] / sum_j n[x,j]`` over the row's
tasks, so weight ratios are at most ``e^(1/tau)``; ``"cosine"`` (the pre-registration's
``focus_mode: cosine``): ``w ∝ exp((cos(g[x,k], g[x,0]) + weight_sign * gamma * log n[x,k]) / tau_t)``,
with cos = 0 for every task on rows the main task does not touch and ``tau_t`` annealed
geometrically from ``tau`` to ``tau_end`` over ``focus_warmup`` epochs: one mechanism for alignment,
temperature and focus, so steps 2 and 4 are off under it (``focus=False`` or ``progressive=False``
keep ``tau_t = tau``). With ``personalized`` off every rule reads the batch norms ``||n[:,k]||``
(and the batch cosines) instead.

"Touching" means: touched by the task's batch and ``n[x,k] > eps`` (a zero gradient has no direction).
A row touched by the main task alone gets exactly ``g[x,0]`` in every variant. Task-specific
parameters (category embeddings) get their own task's gradient unchanged. See docs/method.md.
"""

from __future__ import annotations

import math

import torch

from pmtrec.errors import TrainingError
from pmtrec.methods.base import GradientMethod, StepContext, StepOutput
from pmtrec.methods.registry import register, register_variant

SCHEDULES = ("linear", "cosine")
MAGNITUDES = ("sum", "norms", "main")
FOCUS_ROWS = ("main", "all")
WEIGHTINGS = ("log_norms", "softmax_norms", "cosine")
NORMS = ("total", "per_sample")
MEMORIES = ("none", "ema")
ROW_MEMORY = ("memory_users", "memory_items")  # [n_rows, K] per table, grown to the largest id seen
POOL_MEMORY = "memory_pooled"                  # [2, K]: (users, items) x task


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
                 eps: float = 1e-12, shuffle_rows: bool = False, weighting: str = "log_norms",
                 gamma: float = 1.0, tau_end: float = 0.1, norms: str = "total", memory: str = "none",
                 memory_decay: float = 0.9, memory_pool: bool = False) -> None:
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
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {', '.join(WEIGHTINGS)}, got {weighting!r}")
        if not (isinstance(gamma, (int, float)) and not isinstance(gamma, bool) and 0 <= gamma < math.inf):
            raise ValueError(f"gamma must be a non-negative number, got {gamma!r}")
        if not (isinstance(tau_end, (int, float)) and not isinstance(tau_end, bool) and 0 < tau_end < math.inf):
            raise ValueError(f"tau_end must be a positive number, got {tau_end!r}")
        if norms not in NORMS:
            raise ValueError(f"norms must be one of {', '.join(NORMS)}, got {norms!r}")
        if memory not in MEMORIES:
            raise ValueError(f"memory must be one of {', '.join(MEMORIES)}, got {memory!r}")
        if not (isinstance(memory_decay, (int, float)) and not isinstance(memory_decay, bool)
                and 0 <= memory_decay < 1):
            raise ValueError(f"memory_decay must be in [0, 1), got {memory_decay!r}")
        if not isinstance(memory_pool, bool):
            raise ValueError(f"memory_pool must be true or false, got {memory_pool!r}")
        self.personalized, self.balance = bool(personalized), bool(balance)
        self.tau, self.weight_sign, self.eps = float(tau), int(weight_sign), float(eps)
        self.align = bool(focus and align)
        self.progressive = bool(focus and progressive)
        self.focus_max, self.focus_warmup, self.focus_schedule = float(focus_max), float(focus_warmup), focus_schedule
        self.norm_by_batch_mean = bool(norm_by_batch_mean)
        self.magnitude = magnitude
        self.focus_rows = focus_rows
        self.shuffle_rows = bool(shuffle_rows)
        self.weighting, self.gamma, self.tau_end = weighting, float(gamma), float(tau_end)
        # cosine weighting is alignment, temperature and focus in one: it replaces steps 2 and 4
        self.anneal = weighting == "cosine" and self.progressive
        if weighting == "cosine":
            self.align = self.progressive = False
        self.norms, self.memory, self.memory_decay = norms, memory, float(memory_decay)
        self.memory_pool = bool(memory_pool)
        # Buffers only with memory on, so the default's state_dict stays empty (the catalogue's
        # class-level `stateful` stays False; every method's state_dict is checkpointed anyway).
        if memory == "ema" and self.memory_pool:
            self.register_buffer(POOL_MEMORY, torch.zeros(2, self.n_tasks))
        elif memory == "ema":
            for name in ROW_MEMORY:
                self.register_buffer(name, torch.zeros(0, self.n_tasks))

    def temperature(self, epoch: float) -> float:
        """The softmax temperature at ``epoch``: ``tau``, or under cosine weighting tau_t, annealed
        geometrically from ``tau`` (epoch 0) to ``tau_end`` (``focus_warmup`` epochs and after)."""
        if not self.anneal:
            return self.tau
        p = focus_schedule(epoch, 1.0, self.focus_warmup, self.focus_schedule)
        return self.tau ** (1.0 - p) * self.tau_end ** p  # exact at both endpoints

    def focus_strength(self, epoch: float) -> float:
        """b(epoch) of progressive focus (0 when progressive focus is off)."""
        if not self.progressive:
            return 0.0
        return focus_schedule(epoch, self.focus_max, self.focus_warmup, self.focus_schedule)

    def _logits(self, norms: torch.Tensor) -> torch.Tensor:
        return self.weight_sign * torch.log(norms.clamp_min(self.eps)) / self.tau

    def _fed_norms(self, norms: torch.Tensor, active: torch.Tensor, mask: torch.Tensor,
                   ctx: StepContext) -> torch.Tensor:
        """[K, R] the norms step 1 reads: per-sample, over the batch mean, remembered (in that order)."""
        eps, n = self.eps, norms
        if self.norms == "per_sample":
            if ctx.touch_counts is None:
                raise TrainingError("pmtrec: norms='per_sample' needs the step's touch counts "
                                    "(StepContext.touch_counts is None)")
            n = norms / ctx.touch_counts.to(norms).clamp_min(1.0)
        if self.personalized and self.norm_by_batch_mean:
            maskf = mask.to(norms.dtype)
            mean = (n * maskf).sum(1, keepdim=True) / maskf.sum(1, keepdim=True).clamp_min(1.0)
            n = n / mean.clamp_min(eps)
        if self.memory == "ema":
            n = n.detach()
            remembered = self._remember_pooled(n, active, ctx) if self.memory_pool else self._remember(n, active, ctx)
            n = torch.where(mask & (remembered > 0), remembered, n)  # never-seen (norm <= eps) rows: the step's
        return n

    def _row_logits(self, n: torch.Tensor, mask: torch.Tensor, gram: torch.Tensor, norms: torch.Tensor,
                    main: torch.Tensor, tau: float) -> torch.Tensor:
        """[K, R] per-row logits of step 1 (masked to the row's tasks by the softmax)."""
        if self.weighting == "log_norms":
            return self._logits(n)
        if self.weighting == "softmax_norms":
            nm = n * mask.to(n.dtype)
            return self.weight_sign * (nm / nm.sum(0, keepdim=True).clamp_min(self.eps)) / tau
        # cosine with the main task from the Gram matrix (no pass over the gradients); 0 off its rows
        cos = (gram[:, 0] / (norms * norms[:1]).clamp_min(self.eps * self.eps)).clamp(-1.0, 1.0)
        cos[0] = 1.0
        cos = torch.where(main, cos, torch.zeros_like(cos))
        return (cos + self.weight_sign * self.gamma * torch.log(n.clamp_min(self.eps))) / tau

    def _task_logits(self, batch_norm: torch.Tensor, present: torch.Tensor, gram: torch.Tensor,
                     tau: float) -> torch.Tensor:
        """[K] logits of step 1 from the batch norms (``personalized`` off)."""
        if self.weighting == "log_norms":
            return self._logits(batch_norm)
        if self.weighting == "softmax_norms":
            bn = batch_norm * present.to(batch_norm.dtype)
            return self.weight_sign * (bn / bn.sum().clamp_min(self.eps)) / tau
        task_gram = gram.sum(-1)                                       # [K, K] of the flattened G_k
        g_norm = torch.diagonal(task_gram).clamp_min(0).sqrt()
        cos = (task_gram[:, 0] / (g_norm * g_norm[0]).clamp_min(self.eps * self.eps)).clamp(-1.0, 1.0)
        cos[0] = 1.0
        cos = torch.where(present[0], cos, torch.zeros_like(cos))
        return (cos + self.weight_sign * self.gamma * torch.log(batch_norm.clamp_min(self.eps))) / tau

    def _ema(self, old: torch.Tensor, new: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
        """``beta old + (1 - beta) new`` where ``seen`` (the first touch sets ``new``); ``old`` elsewhere."""
        beta = self.memory_decay
        return torch.where(seen, torch.where(old > 0, beta * old + (1.0 - beta) * new, new), old)

    def _remember(self, n: torch.Tensor, active: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        """Update the per-entity tables with the step's norms ``n`` [K, R]; the remembered [K, R]."""
        ids = ctx.row_ids
        if ids is None:
            raise TrainingError("pmtrec: memory='ema' needs the step's row ids (StepContext.row_ids is None)")
        ids = ids.to(n.device)
        nu = ctx.n_user_rows
        none = ids.new_full((1,), -1)
        sizes = torch.stack([torch.cat([ids[:nu], none]).max(), torch.cat([ids[nu:], none]).max()]).add(1).tolist()
        out = []
        for name, size, part in zip(ROW_MEMORY, sizes, (slice(0, nu), slice(nu, None))):  # two tables
            table = self._grown(name, size, n)
            rows = ids[part]
            new = self._ema(table.index_select(0, rows).T, n[:, part], active[:, part])   # [K, r]
            table.index_copy_(0, rows, new.T)  # a table's ids are unique within a step
            out.append(new)
        return torch.cat(out, 1)

    def _remember_pooled(self, n: torch.Tensor, active: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        """One average per task and table: update it with the step's mean norms; the remembered [K, R]."""
        pool = self._grown(POOL_MEMORY, 2, n)
        nu = ctx.n_user_rows
        af = active.to(n.dtype)
        sums = torch.stack([(n * af)[:, :nu].sum(1), (n * af)[:, nu:].sum(1)], 1)   # [K, 2]
        count = torch.stack([af[:, :nu].sum(1), af[:, nu:].sum(1)], 1)
        new = self._ema(pool.T, sums / count.clamp_min(1.0), count > 0)
        pool.copy_(new.T)
        table = (torch.arange(n.shape[1], device=n.device) >= nu).long()          # [R]: 0 users, 1 items
        return new[:, table]

    def _grown(self, name: str, size: int, like: torch.Tensor) -> torch.Tensor:
        """The memory buffer ``name`` on ``like``'s device and dtype, with at least ``size`` rows."""
        buf = getattr(self, name)
        if buf.dtype != like.dtype or buf.device != like.device:
            buf = buf.to(like)
        if buf.shape[0] < size:
            grown = buf.new_zeros(size, buf.shape[1])
            grown[:buf.shape[0]] = buf
            buf = grown
        setattr(self, name, buf)  # a registered buffer: replaced, still in state_dict
        return buf

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # a checkpoint's tables have the size (and dtype) they had grown to: take them as saved
        for name in (*ROW_MEMORY, POOL_MEMORY):
            saved = state_dict.get(prefix + name)
            if name in self._buffers and saved is not None and (saved.shape != self._buffers[name].shape
                                                                or saved.dtype != self._buffers[name].dtype):
                self._buffers[name] = torch.zeros(saved.shape, dtype=saved.dtype, device=self._buffers[name].device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

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
        n = self._fed_norms(norms, active, mask, ctx)                  # what the weighting reads
        tau = self.temperature(ctx.epoch)
        if self.personalized:
            w = _masked_softmax(self._row_logits(n, mask, gram, norms, main, tau), mask)
        else:
            batch_norm = n.square().sum(1).sqrt()                      # ||G_k|| over all rows, [K]
            present = batch_norm > eps
            if not self.balance:
                logits = torch.zeros_like(batch_norm)
            else:
                if self.norm_by_batch_mean:  # a batch norm over its own batch mean is 1: uniform weights
                    batch_norm = batch_norm / batch_norm.clamp_min(eps)
                logits = self._task_logits(batch_norm, present, gram, tau)
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
