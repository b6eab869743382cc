"""Loss-weighting baselines: the combined update is ``sum_k w_k * grad L_k`` with per-step weights.

``static``, ``uw``, ``dwa``, ``rlw`` and ``famo`` only need the losses, so they are
:class:`LossWeighting` methods (one backward pass). ``gradnorm`` and ``dbmtl`` choose
their weights from per-task gradient norms, so they are :class:`GradientMethod` methods
that return ``sum_k w_k g_k`` and scale each task's own parameters accordingly.

Methods that update their weights with an optimizer of their own (GradNorm, FAMO) keep
its moments in buffers (:class:`_Adam`), so a checkpoint resumes them exactly; they do
not use the trainer's optimizer because their learning rate and decay are their own
hyperparameters.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch
from torch import nn

from pmtrec.methods.base import GradientMethod, LossWeighting, StepContext, StepOutput
from pmtrec.methods.registry import register


class _Adam(nn.Module):
    """Adam (Kingma & Ba 2015, L2-style ``weight_decay`` as in ``torch.optim.Adam``) on one
    buffer, with its moments as buffers so that ``state_dict`` carries them."""

    def __init__(self, size: int, lr: float, weight_decay: float = 0.0,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        super().__init__()
        if not lr > 0:
            raise ValueError(f"learning rate must be positive, got {lr!r}")
        if weight_decay < 0:
            raise ValueError(f"weight decay must be non-negative, got {weight_decay!r}")
        self.lr, self.weight_decay, self.betas, self.eps = float(lr), float(weight_decay), betas, eps
        self.register_buffer("m", torch.zeros(size))
        self.register_buffer("v", torch.zeros(size))
        self.register_buffer("t", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def step(self, param: torch.Tensor, grad: torch.Tensor) -> None:
        b1, b2 = self.betas
        if self.weight_decay:
            grad = grad + self.weight_decay * param
        self.t += 1
        t = int(self.t)
        self.m.mul_(b1).add_(grad, alpha=1 - b1)
        self.v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        denom = (self.v.sqrt() / math.sqrt(1 - b2 ** t)).add_(self.eps)
        param.addcdiv_(self.m, denom, value=-self.lr / (1 - b1 ** t))


@register
class StaticWeighting(LossWeighting):
    """Static: fixed task weights from the config, ``L = sum_k w_k L_k``.

    ``weights`` is a list in task order (task 0 = the main task) or a mapping task name ->
    weight naming every task of the run; ``None`` gives weight 1 to every task (= ``ew``).
    """

    name = "static"
    label = "Static"
    colour = "#DDCC77"
    order = 30

    def __init__(self, task_names: Sequence[str], weights: Sequence[float] | Mapping[str, float] | None = None) -> None:
        super().__init__(task_names)
        K = self.n_tasks
        if weights is None:
            values = [1.0] * K
        elif isinstance(weights, Mapping):
            unknown = [k for k in weights if k not in self.task_names]
            missing = [k for k in self.task_names if k not in weights]
            if unknown:
                raise ValueError(f"weights: unknown task(s) {', '.join(map(str, unknown))} "
                                 f"(this run's tasks: {', '.join(self.task_names)})")
            if missing:
                raise ValueError(f"weights: no weight for task(s) {', '.join(missing)} "
                                 f"(this run's tasks: {', '.join(self.task_names)})")
            values = [weights[k] for k in self.task_names]
        elif isinstance(weights, (list, tuple)):
            if len(weights) != K:
                raise ValueError(f"weights: {len(weights)} value(s) for {K} task(s) ({', '.join(self.task_names)})")
            values = list(weights)
        else:
            raise ValueError(f"weights: a list or a mapping task -> weight, got {type(weights).__name__}")
        for task, v in zip(self.task_names, values):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"weights: the weight of task '{task}' must be a finite non-negative number, "
                                 f"got {v!r}")
        self.register_buffer("w", torch.tensor(values, dtype=torch.float32), persistent=False)

    def weights(self, ctx: StepContext) -> torch.Tensor:
        return self.w.to(ctx.losses.dtype)


@register
class UncertaintyWeighting(LossWeighting):
    """UW (Kendall, Gal & Cipolla, CVPR 2018): ``L = sum_k exp(-s_k) L_k + s_k``.

    ``s_k = log sigma_k^2`` is a learned log-variance per task (initialised 0, trained by the
    trainer's optimizer with the embeddings). This is the common form ``exp(-s) L + s``; it is
    twice LibMTL's ``exp(-s) L / 2 + s / 2`` (Kendall's ``L / (2 sigma^2) + log sigma``), with the
    same minimiser ``exp(s_k) = L_k``. The reported weights are ``exp(-s_k)``.
    """

    name = "uw"
    label = "UW"
    colour = "#117733"
    order = 40
    stateful = True

    def __init__(self, task_names: Sequence[str]) -> None:
        super().__init__(task_names)
        self.log_vars = nn.Parameter(torch.zeros(self.n_tasks))

    def weights(self, ctx: StepContext) -> torch.Tensor:
        return torch.exp(-self.log_vars)  # not detached: the weighted sum trains s

    def extra_loss(self, ctx: StepContext) -> torch.Tensor:
        return self.log_vars.sum()


@register
class DynamicWeightAverage(LossWeighting):
    """DWA (Liu, Johns & Davison, CVPR 2019): ``w_k(t) = K softmax_k(r_k(t-1) / T)``.

    ``r_k(t-1) = L_k(t-1) / L_k(t-2)`` is the ratio of task k's mean training losses over the
    two previous epochs; the first two epochs use ``w_k = 1``. Temperature ``T`` = 2 (paper).
    """

    name = "dwa"
    label = "DWA"
    colour = "#88CCEE"
    order = 50
    stateful = True
    tunable = {"temperature": (1.0, 5.0)}

    def __init__(self, task_names: Sequence[str], temperature: float = 2.0) -> None:
        super().__init__(task_names)
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature!r}")
        self.temperature = float(temperature)
        self.register_buffer("history", torch.ones(2, self.n_tasks))  # [L(t-2), L(t-1)]
        self.register_buffer("epochs_seen", torch.zeros((), dtype=torch.long))

    def weights(self, ctx: StepContext) -> torch.Tensor:
        if int(self.epochs_seen) < 2:
            return torch.ones(self.n_tasks, device=ctx.losses.device)
        r = self.history[1] / self.history[0].clamp_min(1e-12)
        return self.n_tasks * torch.softmax(r / self.temperature, dim=0)

    def end_epoch(self, epoch: int, mean_losses: torch.Tensor) -> None:
        self.history.copy_(torch.stack([self.history[1], mean_losses.detach().to(self.history)]))
        self.epochs_seen += 1


@register
class RandomLossWeighting(LossWeighting):
    """RLW (Lin et al., TMLR 2022): ``w = softmax(z)``, ``z ~ N(0, I_K)`` drawn afresh every step.

    The draw uses torch's global CPU generator (seeded by the trainer and saved in its
    checkpoints), so the weights do not depend on the device.
    """

    name = "rlw"
    symmetry = "none"
    label = "RLW"
    colour = "#44AA99"
    order = 70

    def weights(self, ctx: StepContext) -> torch.Tensor:
        z = torch.randn(self.n_tasks)
        return torch.softmax(z, dim=0).to(ctx.losses.device)


@register
class FAMO(LossWeighting):
    """FAMO (Liu et al., NeurIPS 2023, "Fast Adaptive Multitask Optimization").

    Logits ``xi`` give ``z = softmax(xi)``; the step minimises ``sum_k z_k log L_k / c`` with
    ``c = sum_k z_k / L_k`` (held constant), i.e. weights ``w_k = (z_k / L_k) / c`` on the raw
    losses (they sum to 1; these are the reported weights). After the optimizer step the same
    batch's losses ``L'`` give ``delta_k = log L_k - log L'_k`` and ``xi`` takes one Adam step
    (learning rate ``w_lr`` = 0.025, L2 decay ``gamma`` = 1e-3, the paper's defaults) along
    ``J_softmax(xi)^T delta``. The losses here are non-negative (BPR, cross-entropy), so the
    official code's ``min_losses`` is 0; ``eps`` = 1e-8 is added inside the logs as there.
    The official trainer also clips the gradient norm; the trainer here does not clip.
    """

    name = "famo"
    label = "FAMO"
    colour = "#999933"
    order = 80
    stateful = True
    tunable = {"gamma": (0.001, 0.01), "w_lr": (0.01, 0.025)}

    def __init__(self, task_names: Sequence[str], gamma: float = 1e-3, w_lr: float = 0.025, eps: float = 1e-8) -> None:
        super().__init__(task_names)
        self.eps = float(eps)
        self.register_buffer("xi", torch.zeros(self.n_tasks))
        self.opt = _Adam(self.n_tasks, lr=w_lr, weight_decay=gamma)

    def weights(self, ctx: StepContext) -> torch.Tensor:
        z = torch.softmax(self.xi, dim=0)
        d = ctx.losses.detach() + self.eps
        return (z / d) / (z / d).sum()

    @torch.no_grad()
    def after_step(self, ctx: StepContext) -> None:
        if ctx.recompute_losses is None:
            raise RuntimeError("famo needs ctx.recompute_losses (the batch's losses after the step)")
        before = ctx.losses.detach() + self.eps
        after = ctx.recompute_losses().detach() + self.eps
        delta = before.log() - after.log()
        z = torch.softmax(self.xi, dim=0)
        grad = z * (delta - (z * delta).sum())  # J_softmax^T delta
        self.opt.step(self.xi, grad)


@register
class GradNorm(GradientMethod):
    """GradNorm (Chen et al., ICML 2018), alpha = 1.5.

    Weights ``w_k`` (initialised 1) give the update ``sum_k w_k g_k`` on the shared rows.
    With ``G_k = ||w_k g_k||`` (the norm of task k's weighted gradient on the rows touched by the
    batch; ``g_k`` from ``ctx.grads()``), ``r_k = (L_k / L_k(0)) / mean_j(L_j / L_j(0))`` and the
    target ``mean_j(G_j) r_k^alpha`` held constant, the weights take one Adam step (``w_lr``,
    default 1e-3 = the trainer's default learning rate; the paper and LibMTL use the model's
    optimizer) on ``sum_k |G_k - target_k|``, whose gradient is ``sign(G_k - target_k) ||g_k||``,
    and are then renormalised to sum to K (clamped at 1e-6 first so they stay positive).
    ``L(0)`` is the first step's losses. Each task's own parameters get ``w_k`` times its gradient.
    The weights used by a step are the ones before its update (reported).
    """

    name = "gradnorm"
    label = "GradNorm"
    colour = "#882255"
    order = 60
    family = "weighting from gradients"
    stateful = True
    tunable = {"alpha": (0.5, 3.0)}

    def __init__(self, task_names: Sequence[str], alpha: float = 1.5, w_lr: float = 1e-3) -> None:
        super().__init__(task_names)
        if alpha < 0:
            raise ValueError(f"alpha must be non-negative, got {alpha!r}")
        self.alpha = float(alpha)
        self.register_buffer("w", torch.ones(self.n_tasks))
        self.register_buffer("initial_losses", torch.zeros(self.n_tasks))
        self.register_buffer("started", torch.zeros((), dtype=torch.bool))
        self.opt = _Adam(self.n_tasks, lr=w_lr)

    @torch.no_grad()
    def aggregate(self, grads: torch.Tensor, ctx: StepContext) -> StepOutput:
        losses = ctx.losses.detach().to(self.w)
        if not bool(self.started):
            self.initial_losses.copy_(losses)
            self.started.fill_(True)
        w = self.w.clone()
        row_grad = torch.einsum("k,krd->rd", w.to(grads.dtype), grads)
        norms = grads.flatten(1).norm(dim=1).to(w)
        G = w * norms
        ratio = losses / self.initial_losses.clamp_min(1e-12)
        target = G.mean() * (ratio / ratio.mean()) ** self.alpha
        self.opt.step(self.w, torch.sign(G - target) * norms)
        self.w.clamp_(min=1e-6)
        self.w.mul_(self.n_tasks / self.w.sum())
        return StepOutput(weights=w, row_grad=row_grad, task_param_scale=w)


@register
class DBMTL(GradientMethod):
    """DB-MTL (Lin et al. 2023, "Dual-Balancing for Multi-Task Learning"), as in LibMTL.

    Loss-scale balancing: each task's loss is log-transformed, so its gradient is
    ``h_k = g_k / L_k``. Gradient-magnitude balancing: ``h_k`` is rescaled to the largest task's
    magnitude, ``update = sum_k (max_j n_j / n_k) h_k``, with ``n_k`` an EMA of ``||h_k||``:
    ``n_k <- ||h_k|| + beta / t^beta_sigma * (n_k - ||h_k||)`` (beta = 0.9, beta_sigma = 0.5,
    t = step count from 1, ``n`` starting at 0 as LibMTL's buffer). LibMTL averages the gradient
    vectors themselves; here every batch touches different embedding rows, so the EMA is kept
    of their norms and the update uses the current batch's ``h_k`` (one scalar per task of state).
    The reported weights are the coefficients on the raw gradients, ``(max_j n_j / n_k) / L_k``.
    Task-specific parameters get the gradient of ``log L_k`` (LibMTL's backward), i.e. scale 1/L_k.
    """

    name = "dbmtl"
    label = "DB-MTL"
    colour = "#AA4499"
    order = 90
    family = "weighting from gradients"
    stateful = True
    tunable = {"beta": (0.9, 0.99), "beta_sigma": (0.25, 0.5)}

    def __init__(self, task_names: Sequence[str], beta: float = 0.9, beta_sigma: float = 0.5,
                 eps: float = 1e-8) -> None:
        super().__init__(task_names)
        if not 0 <= beta <= 1:
            raise ValueError(f"beta must be in [0, 1], got {beta!r}")
        self.beta, self.beta_sigma, self.eps = float(beta), float(beta_sigma), float(eps)
        self.register_buffer("norm_ema", torch.zeros(self.n_tasks))
        self.register_buffer("t", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def aggregate(self, grads: torch.Tensor, ctx: StepContext) -> StepOutput:
        inv_loss = 1.0 / (ctx.losses.detach().to(self.norm_ema) + self.eps)
        norms = grads.flatten(1).norm(dim=1).to(self.norm_ema) * inv_loss  # ||grad log L_k||
        self.t += 1
        c = self.beta / float(self.t) ** self.beta_sigma
        self.norm_ema.copy_(norms + c * (self.norm_ema - norms))
        alpha = self.norm_ema.max() / (self.norm_ema + 1e-8)
        coef = alpha * inv_loss
        row_grad = torch.einsum("k,krd->rd", coef.to(grads.dtype), grads)
        return StepOutput(weights=coef, row_grad=row_grad, task_param_scale=inv_loss)

