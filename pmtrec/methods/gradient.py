"""Gradient-manipulation baselines on the shared embedding rows.

Every method here reads the per-task row gradients ``ctx.grads()`` [K, R, d], flattens them
to the Jacobian ``J`` [K, R*d] (the shared parameters are the embedding rows the batch
touched), and returns ``w @ J`` for task weights ``w`` that depend on ``J``. All but Nash-MTL
need only the Gramian ``J J^T`` [K, K]: it is formed once on the device and the weights are
solved in float64 on the CPU (one small transfer; the solvers are sequential anyway).
The weights are torchjd 0.18 ``Weighting`` outputs wherever torchjd has the method; they are
the exact coefficient of each task gradient in the result, and are what ``StepOutput.weights``
reports. Each task's own parameters (e.g. category embeddings) keep their task's gradient.
"""

from __future__ import annotations

import functools
import importlib
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from pmtrec.errors import ConfigError
from pmtrec.methods.base import GradientMethod, StepContext, StepOutput
from pmtrec.methods.registry import register


def _jd():
    """torchjd's aggregation module, imported by the methods that use it (not by a run of `ew`:
    torchjd and its cvxpy stack take seconds to import, once per training job)."""
    from torchjd import aggregation

    return aggregation


def require_solvers(method: str, modules: Sequence[str]) -> None:
    """cvxpy and its solvers are the optional extra `solvers`: a method that needs them says so in
    one line when it is built (a run's start, the workflow's parse-time check), not mid-run."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            raise ConfigError(f"method {method} needs the optional solver stack: pip install 'pmtrec[solvers]' "
                              f"({name} is not installed)") from None


# torchjd private names used here, with no public equivalent in 0.18: GradVacWeighting's EMA targets
# (``_phi_t``, ``_state_key``: checkpointed as our buffer ``phi``) and the Nash-MTL weighting class
# (``_nash_mtl._NashMTLWeighting``: its solver loop, restated in DPP form). pyproject pins torchjd
# to 0.18.x; tests/test_packaging.py checks these names exist and behave as used here.
TORCHJD_PRIVATE = ("GradVacWeighting._phi_t", "GradVacWeighting._state_key", "_nash_mtl._NashMTLWeighting")


def _hold(module: nn.Module, name: str, obj: Any) -> None:
    """Attach a torchjd object without registering it as a submodule: its state (if any) is
    mirrored in the method's own buffers, so ``state_dict`` stays ours and loadable."""
    object.__setattr__(module, name, obj)


class _GramianMethod(GradientMethod):
    """``row_grad = w(J J^T) @ J``; subclasses give ``gramian_weights``."""

    def gramian_weights(self, gramian: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def aggregate(self, grads: torch.Tensor, ctx: StepContext) -> StepOutput:
        J = grads.flatten(1)
        gramian = (J @ J.T).double().cpu()
        w = self.gramian_weights(gramian).to(device=J.device, dtype=J.dtype)
        return StepOutput(weights=w, row_grad=(w @ J).view_as(grads[0]))


def min_norm_weights(gramian: torch.Tensor) -> torch.Tensor:
    """``argmin_{w in simplex} w^T G w``: the min-norm point of the convex hull of the rows of J.

    Solved exactly as a QP with quadprog (G scaled by its largest diagonal entry, plus 1e-10 I so
    quadprog sees a positive-definite matrix); torchjd's Frank-Wolfe is the fallback.
    """
    from qpsolvers import solve_qp
    from qpsolvers.exceptions import QPError

    K = gramian.shape[0]
    scale = float(gramian.diagonal().max())
    if K == 1 or not scale > 0:
        return torch.full((K,), 1.0 / K, dtype=gramian.dtype)
    P = gramian.numpy() / scale + 1e-10 * np.eye(K)
    P = (P + P.T) / 2
    try:
        w = solve_qp(P, np.zeros(K), G=-np.eye(K), h=np.zeros(K), A=np.ones((1, K)), b=np.ones(1),
                     solver="quadprog")
    except (ValueError, QPError):  # quadprog: ValueError on a numerically indefinite matrix
        w = None
    if w is None:
        return _jd().MGDAWeighting(epsilon=1e-6, max_iters=1000)(gramian)
    w = np.clip(w, 0.0, None)
    return torch.from_numpy(w / w.sum()).to(gramian.dtype)


@register
class MGDA(_GramianMethod):
    """MGDA-UB (Sener & Koltun, NeurIPS 2018): the min-norm point of the convex hull of the task gradients.

    ``w = argmin_{w >= 0, sum w = 1} ||sum_k w_k g_k||^2``, update ``sum_k w_k g_k``. MGDA-UB
    solves this on the gradients of the shared representation; here the shared parameters are
    the embedding rows themselves, so the solve is on the row-gradient matrix J (the exact
    MGDA solve, of which the paper's bound is an approximation). Hand-written as an exact QP
    (quadprog): torchjd's Frank-Wolfe ``MGDA`` (the paper's Algorithm 2, epsilon 1e-3) stopped up
    to 4.5% above the minimum norm on random 3-task problems.
    """

    name = "mgda"
    implementation = "hand (exact QP, quadprog)"
    label = "MGDA"
    colour = "#CC6677"
    order = 100

    def gramian_weights(self, gramian: torch.Tensor) -> torch.Tensor:
        return min_norm_weights(gramian)


@register
class PCGrad(_GramianMethod):
    """PCGrad (Yu et al., NeurIPS 2020): gradient surgery, via ``torchjd.aggregation.PCGradWeighting``.

    For each task i, in a random order of the other tasks j: if ``g_i' . g_j < 0`` then
    ``g_i' <- g_i' - (g_i' . g_j / ||g_j||^2) g_j``; the update is ``sum_i g_i'`` (equals the EW sum
    when no pair conflicts). The weights are the coefficients of each original ``g_k`` in it.
    The order uses torch's global CPU generator.
    """

    name = "pcgrad"
    symmetry = "none"
    implementation = "torchjd `PCGradWeighting`"
    label = "PCGrad"
    colour = "#0077BB"
    order = 110

    def __init__(self, task_names: Sequence[str]) -> None:
        super().__init__(task_names)
        _hold(self, "_jd", _jd().PCGradWeighting())

    def gramian_weights(self, gramian: torch.Tensor) -> torch.Tensor:
        return self._jd(gramian)


@register
class GradVac(_GramianMethod):
    """GradVac (Wang et al., ICLR 2021), via ``torchjd.aggregation.GradVacWeighting`` (whole model).

    Like PCGrad, but whenever the cosine ``phi_ij`` of ``g_i'`` and ``g_j`` is below an EMA target
    ``phi_hat_ij``, ``g_i' += ||g_i'|| (phi_hat sqrt(1 - phi^2) - phi sqrt(1 - phi_hat^2)) /
    (||g_j|| sqrt(1 - phi_hat^2)) g_j``; then ``phi_hat_ij <- (1 - beta) phi_hat_ij + beta phi_ij``
    (beta = 0.01, the paper's). The targets are the buffer ``phi`` (checkpointed).
    """

    name = "gradvac"
    symmetry = "none"
    implementation = "torchjd `GradVacWeighting`"
    label = "GradVac"
    colour = "#77AADD"
    order = 120
    stateful = True
    tunable = {"beta": (0.001, 0.1)}

    def __init__(self, task_names: Sequence[str], beta: float = 0.01, eps: float = 1e-8) -> None:
        super().__init__(task_names)
        _hold(self, "_jd", _jd().GradVacWeighting(beta=beta, eps=eps))
        self.register_buffer("phi", torch.zeros(self.n_tasks, self.n_tasks, dtype=torch.float64))

    def gramian_weights(self, gramian: torch.Tensor) -> torch.Tensor:
        phi = self.phi.detach().to("cpu", torch.float64).clone()
        self._jd._phi_t = phi  # torchjd updates its targets in place
        self._jd._state_key = (self.n_tasks, gramian.dtype)
        w = self._jd(gramian)
        self.phi.copy_(phi)
        return w


@register
class CAGrad(_GramianMethod):
    """CAGrad (Liu et al., NeurIPS 2021), c = 0.4, via ``torchjd.aggregation.CAGradWeighting``.

    With ``g0`` the mean gradient: ``w* = argmin_{w in simplex} g_w . g0 + sqrt(phi) ||g_w||``,
    ``phi = c^2 ||g0||^2``; update ``g0 + sqrt(phi) / ||g_w*|| g_w*``, divided by ``1 + c^2`` when
    ``rescale`` (the official code's default ``rescale=1``; torchjd does not rescale).
    """

    name = "cagrad"
    implementation = "torchjd `CAGradWeighting`"
    label = "CAGrad"
    colour = "#004488"
    order = 130
    tunable = {"c": (0.2, 0.6)}

    def __init__(self, task_names: Sequence[str], c: float = 0.4, rescale: bool = True) -> None:
        super().__init__(task_names)
        require_solvers(self.name, ("cvxpy", "clarabel"))
        _hold(self, "_jd", _jd().CAGradWeighting(c=c))
        self.c, self.rescale = float(c), bool(rescale)

    def gramian_weights(self, gramian: torch.Tensor) -> torch.Tensor:
        w = self._jd(gramian)
        return w / (1.0 + self.c ** 2) if self.rescale else w


@register
class IMTLG(_GramianMethod):
    """IMTL-G (Liu et al., ICLR 2021), via ``torchjd.aggregation.IMTLGWeighting``.

    The update ``g = sum_k w_k g_k`` with ``sum_k w_k = 1`` has equal projections on every unit
    task gradient, ``g . u_k = const`` (``u_k = g_k / ||g_k||``): ``w proportional to G^+ (||g_k||)_k``.
    Its direction is invariant to rescaling any task's gradient.
    """

    name = "imtl"
    implementation = "torchjd `IMTLGWeighting`"
    label = "IMTL"
    colour = "#997700"
    order = 140

    def __init__(self, task_names: Sequence[str]) -> None:
        super().__init__(task_names)
        _hold(self, "_jd", _jd().IMTLGWeighting())

    def gramian_weights(self, gramian: torch.Tensor) -> torch.Tensor:
        return self._jd(gramian)


@register
class AlignedMTL(_GramianMethod):
    """Aligned-MTL (Senushkin et al., CVPR 2023), via ``torchjd.aggregation.AlignedMTLWeighting``.

    The gradient matrix is made orthogonal with equal singular values, ``J' = sqrt(lambda_min)
    V Sigma^{-1} V^T J`` (eigendecomposition ``G = V Sigma^2 V^T``), and combined with the
    mean preference vector: ``w = B (1/K)``, ``B = sqrt(lambda_min) V Sigma^{-1} V^T``.
    ``scale_mode`` min (paper) | median | rmse.
    """

    name = "alignedmtl"
    implementation = "torchjd `AlignedMTLWeighting`"
    label = "Aligned-MTL"
    colour = "#BBCC33"
    order = 160
    tunable = {"scale_mode": ("min", "median", "rmse")}

    def __init__(self, task_names: Sequence[str], scale_mode: str = "min") -> None:
        super().__init__(task_names)
        if scale_mode not in ("min", "median", "rmse"):
            raise ValueError(f"scale_mode must be min, median or rmse, got {scale_mode!r}")
        _hold(self, "_jd", _jd().AlignedMTLWeighting(scale_mode=scale_mode))  # type: ignore[arg-type]

    def gramian_weights(self, gramian: torch.Tensor) -> torch.Tensor:
        return self._jd(gramian)


@register
class UPGrad(_GramianMethod):
    """UPGrad (Quinton & Rey 2024, "Jacobian Descent for Multi-Objective Optimization"), via torchjd.

    ``torchjd.aggregation.UPGradWeighting``: each task gradient is projected onto the dual cone ``{x : g_k . x >= 0 for all k}`` and the
    projections are averaged (mean preference vector): the update never conflicts with any task.
    """

    name = "upgrad"
    implementation = "torchjd `UPGradWeighting`"
    label = "UPGrad"
    colour = "#FFAABB"
    order = 170

    def __init__(self, task_names: Sequence[str]) -> None:
        super().__init__(task_names)
        _hold(self, "_jd", _jd().UPGradWeighting())

    def gramian_weights(self, gramian: torch.Tensor) -> torch.Tensor:
        return self._jd(gramian)


@functools.lru_cache(maxsize=1)
def _nash_weighting_class():
    """The DPP-form Nash-MTL weighting, built on first use (it subclasses a torchjd class)."""
    import cvxpy as cp
    from torchjd.aggregation._nash_mtl import _NashMTLWeighting as _TorchJDNash

    class _NashMTLWeighting(_TorchJDNash):
        """torchjd's Nash-MTL weighting with its convex subproblem restated in DPP form.

        torchjd (like the official code) divides by a cvxpy Parameter and multiplies Parameters, so
        cvxpy recompiles the problem at each of the up to ``optim_niter`` solves of every step. Here the
        linearisation ``(1/a + (1/(G a)) G) / nf`` is computed in numpy and passed as one Parameter, and
        ``-log(a nf) - log(G a) <= 0`` becomes ``-log a - log(G a) <= log nf``: the same problem (the
        objective differs by a constant), compiled once; weights agree with torchjd's to 1e-6.
        """

        def _init_optim_problem(self) -> None:
            K = self.n_tasks
            self.alpha_param = cp.Variable(shape=(K,), nonneg=True)
            self.prvs_alpha_param = cp.Parameter(shape=(K,), value=self.prvs_alpha)
            self.G_param = cp.Parameter(shape=(K, K), value=self.init_gtg)
            self.lin_param = cp.Parameter(shape=(K,), value=np.zeros(K))
            self.log_nf_param = cp.Parameter(value=0.0)
            G_alpha = self.G_param @ self.alpha_param
            self.prob = cp.Problem(cp.Minimize(cp.sum(G_alpha) + self.lin_param @ self.alpha_param),
                                   [-cp.log(self.alpha_param) - cp.log(G_alpha) <= self.log_nf_param])

        def _solve_optimization(self, gtg: np.ndarray) -> np.ndarray:  # torchjd's loop, DPP parameters
            self.G_param.value = gtg
            nf = float(np.asarray(self.normalization_factor).reshape(-1)[0])
            self.log_nf_param.value = float(np.log(max(nf, 1e-300)))
            alpha_t = self.prvs_alpha
            for _ in range(self.optim_niter):
                self.alpha_param.value = alpha_t
                self.prvs_alpha_param.value = alpha_t
                try:  # as torchjd: a failed solve (e.g. a zero task gradient) keeps the previous weights
                    with np.errstate(divide="ignore", invalid="ignore"):
                        self.lin_param.value = (1 / alpha_t + (1 / (gtg @ alpha_t)) @ gtg) / nf
                    self.prob.solve(solver=cp.ECOS, warm_start=True, max_iters=100)
                except (cp.SolverError, ValueError):
                    self.alpha_param.value = self.prvs_alpha_param.value
                if self._stop_criteria(gtg, alpha_t):
                    break
                alpha_t = self.alpha_param.value
            if alpha_t is not None:
                self.prvs_alpha = alpha_t
            return self.prvs_alpha

    return _NashMTLWeighting


@register
class NashMTL(GradientMethod):
    """Nash-MTL (Navon et al., ICML 2022), via torchjd's ``NashMTL`` weighting (cvxpy + ECOS, in DPP form).

    The weights solve the bargaining condition ``G alpha = 1 / alpha`` (``G`` the Gramian; the
    solver works on ``G`` over its Frobenius norm and scales back) by up to ``optim_niter`` (20)
    sequential convex approximations, warm-started from the previous step's weights. The
    update ``sum_k alpha_k g_k`` is scaled down to norm ``max_norm`` (1.0, as the official
    code; 0 disables) when longer. ``update_weights_every`` (1 = the paper) re-solves only every N steps and
    reuses the last weights in between (a documented Nash-MTL option to save time). The solver's
    warm-start weights and step counter are checkpointed as extra state.
    """

    name = "nashmtl"
    implementation = "torchjd `NashMTL` weighting (DPP form)"
    label = "Nash-MTL"
    colour = "#99DDFF"
    order = 150
    stateful = True

    def __init__(self, task_names: Sequence[str], max_norm: float = 1.0, update_weights_every: int = 1,
                 optim_niter: int = 20) -> None:
        super().__init__(task_names)
        require_solvers(self.name, ("cvxpy", "ecos"))
        _hold(self, "_jd", _nash_weighting_class()(n_tasks=self.n_tasks, max_norm=max_norm,
                                             update_weights_every=update_weights_every, optim_niter=optim_niter))

    @torch.no_grad()
    def aggregate(self, grads: torch.Tensor, ctx: StepContext) -> StepOutput:
        J = grads.flatten(1)
        w = self._jd(J)
        w = w.to(device=J.device, dtype=J.dtype)
        return StepOutput(weights=w, row_grad=(w @ J).view_as(grads[0]))

    def get_extra_state(self) -> dict:
        return {"step": float(self._jd.step), "prvs_alpha": np.asarray(self._jd.prvs_alpha).tolist()}

    def set_extra_state(self, state: dict) -> None:
        self._jd.reset()
        self._jd.prvs_alpha = np.asarray(state["prvs_alpha"], dtype=np.float64)
        self._jd.step = float(state["step"])
        if self._jd.step > 0:
            self._jd._init_optim_problem()
