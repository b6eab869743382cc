"""The standard multi-task baselines: each method's defining property on small hand-made gradients.

A step context is built by hand: the losses are ``L_k = c_k + <G_k, rows>`` at ``rows = 0``,
so each task's loss value is ``c_k`` and its row gradient is exactly ``G_k``.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pmtrec.errors import ConfigError
from pmtrec.methods import METHODS, StepContext, build_method, entries, entry
from pmtrec.methods.gradient import min_norm_weights

NAMES = ("rec", "social", "category", "coview")
BASELINES = ["static", "uw", "dwa", "gradnorm", "rlw", "famo", "dbmtl", "mgda", "pcgrad", "gradvac", "cagrad",
             "imtl", "nashmtl", "alignedmtl", "upgrad", "metabalance"]
N_USER_ROWS = 3


def make_ctx(G: torch.Tensor, c=None, after=None, step: int = 0) -> StepContext:
    """Context whose task k has loss ``c_k`` and row gradient ``G_k`` (G: [K, R, d])."""
    G = G.detach().float()
    K, R, d = G.shape
    c = torch.ones(K) if c is None else torch.as_tensor(c, dtype=torch.float32)
    rows = torch.zeros(R, d, requires_grad=True)
    losses = c + (G * rows).sum((1, 2))
    recompute = None if after is None else (lambda: torch.as_tensor(after, dtype=torch.float32))
    return StepContext.for_rows(losses=losses, task_names=NAMES[:K], rows=rows, n_user_rows=N_USER_ROWS,
                       row_ids=torch.arange(R), touched=G.abs().sum(-1) > 0,
                       task_params=[[] for _ in range(K)], epoch=0, epochs=10, step=step,
                       recompute_losses=recompute)


def run(method, G, c=None, after=None):
    """One step (and after_step): (combined row gradient, reported weights, StepOutput)."""
    ctx = make_ctx(G, c, after)
    out = method.step(ctx)
    if out.loss is not None:
        grad = torch.autograd.grad(out.loss, ctx.source.rows)[0]
    else:
        grad = out.row_grad
    method.after_step(ctx)
    return grad.detach(), out.weights.detach(), out


def mat(*vectors) -> torch.Tensor:
    """Task gradients given as flat vectors, shaped [K, 1, d] (one row)."""
    return torch.tensor(vectors, dtype=torch.float32)[:, None, :]


def rand_grads(seed: int, K: int, R: int = 6, d: int = 4, conflict: bool = True) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    G = torch.randn(K, R, d, generator=g)
    if conflict:  # make task 1 conflict with task 0, and scale tasks differently
        G[1] = -0.7 * G[0] + 0.5 * torch.randn(R, d, generator=g)
        G = G * torch.tensor([1.0, 3.0, 0.3, 1.5][:K])[:, None, None]
    return G


def flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(-1).double()


def cosine(a, b) -> float:
    a, b = flat(a), flat(b)
    return float(a @ b / (a.norm() * b.norm()))


# ---------------------------------------------------------------- registry ----------------------------------
def test_every_baseline_is_registered_with_a_docstring():
    for name in BASELINES:
        assert name in METHODS, name
        assert (METHODS[name].__doc__ or "").strip(), name


@pytest.mark.parametrize("name,params,message", [
    ("static", {"weights": [1.0, 2.0]}, "2 value"),
    ("static", {"weights": {"rec": 1, "social": 1, "category": 1, "coview": 1, "nope": 1}}, "unknown task"),
    ("static", {"weights": {"rec": 1, "social": 1}}, "no weight for task"),
    ("static", {"weights": [1, -1, 1, 1]}, "non-negative"),
    ("metabalance", {"strategy": "bogus"}, "strategy"),
    ("metabalance", {"relax": 1.5}, "relax"),
    ("mgda", {"epsilon": 0.1}, "not a parameter"),
    ("dwa", {"temperature": 0}, "temperature"),
])
def test_bad_parameters_are_config_errors(name, params, message):
    with pytest.raises(ConfigError, match=message):
        build_method(name, NAMES, params)


# ---------------------------------------------------------------- loss weighting ----------------------------
def test_ew_is_the_plain_sum():
    G = rand_grads(0, 4)
    grad, w, _ = run(build_method("ew", NAMES), G)
    torch.testing.assert_close(grad, G.sum(0))
    assert w.tolist() == [1.0, 1.0, 1.0, 1.0]


@pytest.mark.parametrize("weights", [[1.0, 0.5, 0.0, 2.0], {"coview": 2.0, "rec": 1.0, "category": 0, "social": 0.5}])
def test_static_uses_its_fixed_weights(weights):
    G = rand_grads(1, 4)
    grad, w, _ = run(build_method("static", NAMES, {"weights": weights}), G)
    assert w.tolist() == [1.0, 0.5, 0.0, 2.0]
    torch.testing.assert_close(grad, G[0] + 0.5 * G[1] + 2.0 * G[3])


def test_uw_weights_follow_the_closed_form():
    m = build_method("uw", NAMES)
    s = torch.tensor([0.5, -1.0, 0.0, 2.0])
    with torch.no_grad():
        m.log_vars.copy_(s)
    c = torch.tensor([0.7, 0.2, 1.5, 0.9])
    ctx = make_ctx(rand_grads(2, 4), c)
    out = m.step(ctx)
    torch.testing.assert_close(out.weights, torch.exp(-s))
    torch.testing.assert_close(out.loss, (torch.exp(-s) * c + s).sum())
    (ds,) = torch.autograd.grad(out.loss, m.log_vars)
    torch.testing.assert_close(ds, 1 - torch.exp(-s) * c)  # stationary where exp(s_k) = L_k


def test_dwa_weights_follow_its_formula_from_the_loss_history():
    m = build_method("dwa", NAMES)
    G = rand_grads(3, 4)
    history = [[1.0, 2.0, 0.5, 1.0], [0.5, 2.0, 1.0, 0.9], [0.4, 1.0, 1.0, 0.9]]
    assert run(m, G)[1].tolist() == [1.0] * 4  # epoch 1: equal weights
    m.end_epoch(0, torch.tensor(history[0]))
    assert run(m, G)[1].tolist() == [1.0] * 4  # epoch 2: still equal
    for e in (1, 2):
        m.end_epoch(e, torch.tensor(history[e]))
        r = [b / a for a, b in zip(history[e - 1], history[e])]
        expected = [4 * math.exp(x / 2) / sum(math.exp(y / 2) for y in r) for x in r]
        grad, w, _ = run(m, G)
        assert w.tolist() == pytest.approx(expected, rel=1e-6)
        torch.testing.assert_close(grad, torch.einsum("k,krd->rd", torch.tensor(expected), G))
    assert sum(expected) == pytest.approx(4)


def test_rlw_weights_are_a_softmax_of_normal_draws():
    m = build_method("rlw", NAMES)
    torch.manual_seed(7)
    draws = [torch.softmax(torch.randn(4), 0) for _ in range(3)]
    torch.manual_seed(7)
    for expected in draws:
        _, w, _ = run(m, rand_grads(4, 4))
        torch.testing.assert_close(w, expected)
    assert not torch.allclose(draws[0], draws[1])


def test_famo_weights_and_logit_update():
    m = build_method("famo", NAMES)
    c = torch.tensor([0.5, 1.0, 2.0, 4.0])
    after = torch.tensor([0.4, 1.0, 2.2, 3.0])
    grad, w, _ = run(m, rand_grads(5, 4), c, after)
    inv = 1 / c
    torch.testing.assert_close(w, inv / inv.sum())  # z uniform at xi = 0: w_k proportional to 1 / L_k
    # xi's gradient J_softmax^T delta; Adam's first step moves each xi by lr * sign(gradient)
    z = torch.full((4,), 0.25)
    delta = c.log() - after.log()
    g = z * (delta - (z * delta).sum())
    torch.testing.assert_close(m.xi, -0.025 * torch.sign(g), atol=1e-6, rtol=1e-5)
    # the next step's weights use z = softmax(xi): tasks whose loss fell least gain weight
    z2 = torch.softmax(m.xi, 0)
    _, w2, _ = run(m, rand_grads(5, 4), c, after)
    torch.testing.assert_close(w2, (z2 / c) / (z2 / c).sum())
    assert w2[2] / w[2] > 1 > w2[3] / w[3]  # category's loss rose, coview's fell most


def test_gradnorm_update_and_weights():
    m = build_method("gradnorm", NAMES, {"w_lr": 0.01})
    G = rand_grads(6, 4)
    c = torch.tensor([0.7, 0.6, 2.0, 0.9])
    grad, w, out = run(m, G, c)
    torch.testing.assert_close(grad, G.sum(0))  # initial weights 1
    assert w.tolist() == [1.0] * 4
    assert out.task_param_scale.tolist() == [1.0] * 4
    # first step: r_k = 1, target = mean_j ||g_j||, gradient sign(||g_k|| - mean) * ||g_k||; Adam moves lr * sign
    n = G.flatten(1).norm(dim=1)
    w1 = 1 - 0.01 * torch.sign(n - n.mean())
    w1 = 4 * w1 / w1.sum()
    torch.testing.assert_close(m.w, w1)
    grad, w, out = run(m, G, c * torch.tensor([0.5, 1.0, 1.0, 1.0]))  # rec's loss halves: its weight will grow
    torch.testing.assert_close(w, w1)
    torch.testing.assert_close(grad, torch.einsum("k,krd->rd", w1, G))
    torch.testing.assert_close(out.task_param_scale, w1)
    assert float(m.w.sum()) == pytest.approx(4.0)


def test_dbmtl_rescales_every_log_gradient_to_the_largest():
    m = build_method("dbmtl", NAMES)
    G = rand_grads(7, 4)
    c = torch.tensor([0.7, 0.6, 2.0, 0.9])
    grad, w, out = run(m, G, c)
    h = G / c[:, None, None]
    target = h.flatten(1).norm(dim=1).max()
    terms = w[:, None, None] * G
    torch.testing.assert_close(terms.flatten(1).norm(dim=1), target.expand(4), rtol=1e-5, atol=0)
    torch.testing.assert_close(grad, terms.sum(0))
    torch.testing.assert_close(out.task_param_scale, 1 / c)


def test_dbmtl_is_invariant_to_scaling_one_task_loss():
    G, c = rand_grads(8, 4), torch.tensor([0.7, 0.6, 2.0, 0.9])
    scale = torch.tensor([1.0, 1.0, 25.0, 1.0])
    a, b = build_method("dbmtl", NAMES), build_method("dbmtl", NAMES)
    for _ in range(3):  # L_3 -> 25 L_3 scales its loss and gradient alike: log L changes by a constant
        ga, _, _ = run(a, G, c)
        gb, _, _ = run(b, G * scale[:, None, None], c * scale)
        torch.testing.assert_close(ga, gb, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- gradient manipulation ---------------------
def test_pcgrad_two_tasks_projects_out_the_conflict():
    g1, g2 = torch.tensor([1.0, 0.0, 0.5]), torch.tensor([-1.0, 1.0, 0.0])
    grad, w, _ = run(build_method("pcgrad", NAMES[:2]), mat(g1.tolist(), g2.tolist()))
    p1 = g1 - (g1 @ g2) / (g2 @ g2) * g2
    p2 = g2 - (g2 @ g1) / (g1 @ g1) * g1
    torch.testing.assert_close(grad[0], p1 + p2)
    assert float(grad[0] @ g1) >= 0 and float(grad[0] @ g2) >= 0
    # coefficients of the original gradients: g1 (1 - g1.g2/|g1|^2) ...
    torch.testing.assert_close(w, torch.tensor([1 + 1 / 1.25, 1 + 1 / 2.0]))


def test_pcgrad_without_conflict_is_the_sum():
    G = mat([1.0, 0.5, 0.0], [0.2, 1.0, 0.0], [0.0, 0.1, 1.0])
    grad, w, _ = run(build_method("pcgrad", NAMES[:3]), G)
    torch.testing.assert_close(grad, G.sum(0))
    assert w.tolist() == [1.0, 1.0, 1.0]


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_pcgrad_two_tasks_never_conflicts(seed):
    G = rand_grads(seed, 2)
    grad, _, _ = run(build_method("pcgrad", NAMES[:2]), G)
    for k in range(2):
        assert float(flat(grad) @ flat(G[k])) >= -1e-5 * float(G[k].norm() * grad.norm())


def _simplex_grid(K: int, n: int) -> torch.Tensor:
    pts = [c for c in itertools.product(range(n + 1), repeat=K - 1) if sum(c) <= n]
    return torch.tensor([[*p, n - sum(p)] for p in pts], dtype=torch.float64) / n


@pytest.mark.parametrize("K", [2, 3])
@pytest.mark.parametrize("seed", range(5))
def test_mgda_is_the_min_norm_point_of_the_convex_hull(K, seed):
    G = rand_grads(seed, K)
    grad, w, _ = run(build_method("mgda", NAMES[:K]), G)
    assert bool((w >= 0).all()) and float(w.sum()) == pytest.approx(1.0, abs=1e-6)
    torch.testing.assert_close(grad, torch.einsum("k,krd->rd", w, G))
    J = G.flatten(1).double()
    grid = _simplex_grid(K, 400 if K == 2 else 200)
    norms = (grid @ J).norm(dim=1)
    best = float(norms.min())
    assert float(flat(grad).norm()) <= best + 1e-6  # no point of the grid is shorter
    assert float(flat(grad).norm()) >= best - 0.02 * best  # and the grid gets close to it


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), K=st.integers(2, 4))
def test_mgda_satisfies_the_min_norm_optimality_condition(seed, K):
    """d = sum w_k g_k is the min-norm hull point iff g_k . d >= |d|^2 for all k (= on the support)."""
    J = rand_grads(seed, K).flatten(1).double()
    w = min_norm_weights(J @ J.T)
    d = w @ J
    dd = float(d @ d)
    scale = float((J * J).sum(1).max())
    proj = J @ d
    assert bool((proj >= dd - 1e-6 * scale).all())
    assert bool(((proj - dd).abs()[w > 1e-6] <= 1e-6 * scale).all())


def test_mgda_two_tasks_closed_form_and_scale_dependence():
    g1, g2 = torch.tensor([1.0, 0.0]), torch.tensor([-0.5, 2.0])
    grad, w, _ = run(build_method("mgda", NAMES[:2]), mat(g1.tolist(), g2.tolist()))
    gamma = float((g2 - g1) @ g2 / ((g1 - g2) @ (g1 - g2)))  # weight of g1, clipped to [0, 1]
    torch.testing.assert_close(w, torch.tensor([gamma, 1 - gamma]))
    # MGDA is not scale invariant: doubling g2 moves the min-norm point's direction
    grad2, _, _ = run(build_method("mgda", NAMES[:2]), mat(g1.tolist(), (2 * g2).tolist()))
    assert cosine(grad, grad2) < 0.99


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), K=st.integers(2, 4))
def test_imtl_gives_equal_projections_on_every_unit_gradient(seed, K):
    G = rand_grads(seed, K)
    grad, w, _ = run(build_method("imtl", NAMES[:K]), G)
    assert float(w.sum()) == pytest.approx(1.0, abs=1e-5)
    J = G.flatten(1).double()
    units = J / J.norm(dim=1, keepdim=True)
    proj = units @ flat(grad)
    torch.testing.assert_close(proj, proj[0].expand(K), rtol=1e-4, atol=1e-6)


def test_imtl_direction_is_invariant_to_scaling_one_task():
    G = rand_grads(11, 3)
    grad, _, _ = run(build_method("imtl", NAMES[:3]), G)
    scaled, _, _ = run(build_method("imtl", NAMES[:3]), G * torch.tensor([1.0, 10.0, 1.0])[:, None, None])
    assert cosine(grad, scaled) == pytest.approx(1.0, abs=1e-6)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), K=st.integers(2, 4))
def test_upgrad_never_conflicts_with_any_task(seed, K):
    G = rand_grads(seed, K)
    grad, _, _ = run(build_method("upgrad", NAMES[:K]), G)
    J = G.flatten(1).double()
    assert bool((J @ flat(grad) >= -1e-6 * J.norm(dim=1) * flat(grad).norm()).all())
    assert float(flat(grad).norm()) > 0


def test_upgrad_without_conflict_is_the_mean():
    G = mat([1.0, 0.5, 0.0], [0.2, 1.0, 0.0], [0.0, 0.1, 1.0])
    grad, _, _ = run(build_method("upgrad", NAMES[:3]), G)
    torch.testing.assert_close(grad, G.mean(0), rtol=1e-3, atol=1e-4)


def test_cagrad_solves_its_dual_problem():
    c = 0.4
    G = rand_grads(12, 3)
    grad, _, _ = run(build_method("cagrad", NAMES[:3]), G)
    J = G.flatten(1).double()
    g0 = J.mean(0)
    sqrt_phi = c * g0.norm()
    grid = _simplex_grid(3, 200)
    gw = grid @ J
    objective = gw @ g0 + sqrt_phi * gw.norm(dim=1)
    best = gw[objective.argmin()]
    expected = (g0 + sqrt_phi * best / best.norm()) / (1 + c ** 2)
    torch.testing.assert_close(flat(grad), expected, rtol=0.02, atol=0.02 * float(expected.norm()))


def test_cagrad_with_c_zero_is_the_mean():
    G = rand_grads(13, 3)
    grad, w, _ = run(build_method("cagrad", NAMES[:3], {"c": 0.0}), G)
    torch.testing.assert_close(grad, G.mean(0), rtol=1e-5, atol=1e-6)


def test_alignedmtl_matches_its_closed_form():
    """Update (1/K) 1^T B J with B = sqrt(lambda_min) G^{-1/2}: the aligned rows B J are orthogonal, equal norm."""
    G = rand_grads(14, 3)
    grad, w, _ = run(build_method("alignedmtl", NAMES[:3]), G)
    J = G.flatten(1).double()
    lam, V = torch.linalg.eigh(J @ J.T)
    B = lam.min().sqrt() * V @ torch.diag(lam.rsqrt()) @ V.T
    torch.testing.assert_close(B @ (J @ J.T) @ B, lam.min() * torch.eye(3, dtype=torch.float64))
    torch.testing.assert_close(w.double(), B.sum(0) / 3, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(flat(grad), (B.sum(0) / 3) @ J, rtol=1e-4, atol=1e-5)


def test_gradvac_first_step_is_pcgrad_then_tracks_its_targets():
    G = mat([1.0, 0.0, 0.5], [-1.0, 1.0, 0.0])
    vac = build_method("gradvac", NAMES[:2])
    pc, _, _ = run(build_method("pcgrad", NAMES[:2]), G)
    grad, _, _ = run(vac, G)  # targets start at 0: the correction is PCGrad's projection
    torch.testing.assert_close(grad, pc)
    cos = -1.0 / math.sqrt(1.25 * 2.0)
    torch.testing.assert_close(vac.phi, torch.tensor([[0.0, 0.01 * cos], [0.01 * cos, 0.0]], dtype=torch.float64))
    # a positively aligned pair below its (negative) target is left alone
    grad, _, _ = run(vac, mat([1.0, 0.0, 0.0], [0.5, 1.0, 0.0]))
    torch.testing.assert_close(grad[0], torch.tensor([1.5, 1.0, 0.0]))


def test_nashmtl_weights_solve_the_bargaining_condition():
    G = rand_grads(15, 3, conflict=False)
    m = build_method("nashmtl", NAMES[:3], {"max_norm": 0.0})
    grad, alpha, _ = run(m, G)
    J = G.flatten(1).double()
    a = alpha.double()
    assert bool((a > 0).all())
    torch.testing.assert_close(a * (J @ J.T @ a), torch.ones(3, dtype=torch.float64), rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(grad, torch.einsum("k,krd->rd", alpha, G))


def test_nashmtl_dpp_form_matches_torchjd():
    import warnings

    from torchjd.aggregation import NashMTL

    ours = build_method("nashmtl", NAMES)
    ref = NashMTL(n_tasks=4)
    for seed in range(6):  # a sequence: both warm-start from the previous weights
        G = rand_grads(seed, 4)
        _, w, _ = run(ours, G)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*not DPP.*")
            w_ref = ref.weighting(G.flatten(1))
        torch.testing.assert_close(w, w_ref, rtol=1e-4, atol=1e-7)


def test_nashmtl_caps_the_update_norm():
    G = 100 * rand_grads(16, 3, conflict=False)
    grad, _, _ = run(build_method("nashmtl", NAMES[:3], {"max_norm": 1.0}), G)
    assert float(grad.norm()) == pytest.approx(1.0, rel=1e-4)


GRADIENT_METHODS = ["mgda", "pcgrad", "gradvac", "cagrad", "imtl", "nashmtl", "alignedmtl", "upgrad", "metabalance",
                    "gradnorm", "dbmtl"]


@pytest.mark.parametrize("name", GRADIENT_METHODS)
@pytest.mark.parametrize("case", ["zero", "duplicate", "parallel"])
def test_degenerate_gradients_give_a_finite_update(name, case):
    G = rand_grads(3, 4)
    if case == "zero":
        G[2] = 0
    elif case == "duplicate":
        G[3] = G[0]
    else:
        G[1] = 2 * G[0]
    grad, w, _ = run(build_method(name, NAMES), G)
    assert bool(torch.isfinite(grad).all()) and bool(torch.isfinite(w).all())
    if name == "mgda" and case == "zero":  # 0 is in the hull: the min-norm update vanishes
        assert float(grad.norm()) < 1e-6 * float(G.norm())


PERMUTATIONS = {"all": [[2, 0, 3, 1], [0, 2, 3, 1]], "aux": [[0, 2, 3, 1], [0, 3, 1, 2]]}


@pytest.mark.parametrize("name", [e.name for e in entries() if e.kind == "method" and e.symmetry != "none"])
def test_permutation_invariance(name):
    """Every method the catalogue calls symmetric: permuting the tasks (for "aux", the auxiliary ones)
    permutes the weights and leaves the combined update unchanged."""
    G = rand_grads(17, 4)
    after = [0.9, 0.8, 0.7, 0.6]  # FAMO reads the losses after the step
    for perm in PERMUTATIONS[entry(name).symmetry]:
        grad, w, _ = run(build_method(name, NAMES), G, after=after)
        grad_p, w_p, _ = run(build_method(name, NAMES), G[perm], after=[after[i] for i in perm])
        torch.testing.assert_close(grad_p, grad, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(w_p, w[perm], rtol=1e-4, atol=1e-6)


def test_order_dependent_methods_are_order_dependent():
    """"none" is a claim too: those methods do change when the tasks are reordered."""
    G = rand_grads(17, 4)
    for e in entries():
        if e.kind == "method" and e.symmetry == "none":
            torch.manual_seed(0)
            grad, _, _ = run(build_method(e.name, NAMES), G)
            torch.manual_seed(0)
            grad_p, _, _ = run(build_method(e.name, NAMES), G[[0, 2, 3, 1]])
            assert not torch.allclose(grad_p, grad, rtol=1e-4, atol=1e-5), e.name


# ---------------------------------------------------------------- MetaBalance -------------------------------
def _table_norms(G):
    return torch.stack([G[:, :N_USER_ROWS].flatten(1).norm(dim=1), G[:, N_USER_ROWS:].flatten(1).norm(dim=1)], 1)


@pytest.mark.parametrize("beta", [0.0, 0.9])
def test_metabalance_relax_one_matches_every_aux_norm_to_the_main(beta):
    G = rand_grads(18, 4)
    G[1, N_USER_ROWS:] = 0  # social touches only users: its item-table gradient stays zero
    m = build_method("metabalance", NAMES, {"relax": 1.0, "beta": beta})
    grad, w, _ = run(m, G)
    n = _table_norms(G)
    factor = torch.where(n > 0, n[:1] / n.clamp_min(1e-30), torch.zeros_like(n))
    adjusted = G.clone()
    adjusted[:, :N_USER_ROWS] *= factor[:, :1, None]
    adjusted[:, N_USER_ROWS:] *= factor[:, 1:, None]
    torch.testing.assert_close(grad, adjusted.sum(0), rtol=1e-5, atol=1e-6)
    an = _table_norms(adjusted)
    for k in range(1, 4):
        for t in range(2):
            if n[k, t] > 0:
                assert float(an[k, t]) == pytest.approx(float(n[0, t]), rel=1e-5)
    assert w[0] == 1.0
    torch.testing.assert_close(w, adjusted.flatten(1).norm(dim=1) / G.flatten(1).norm(dim=1))


def test_metabalance_relax_zero_is_the_sum_and_relax_mixes_linearly():
    G = rand_grads(19, 4)
    grad0, w0, _ = run(build_method("metabalance", NAMES, {"relax": 0.0}), G)
    torch.testing.assert_close(grad0, G.sum(0))
    assert w0.tolist() == pytest.approx([1.0] * 4)
    grad1, _, _ = run(build_method("metabalance", NAMES, {"relax": 1.0}), G)
    grad7, _, _ = run(build_method("metabalance", NAMES, {"relax": 0.7}), G)
    torch.testing.assert_close(grad7, 0.7 * grad1 + 0.3 * grad0, rtol=1e-5, atol=1e-6)


def test_metabalance_moving_average_of_norms():
    m = build_method("metabalance", NAMES[:2], {"relax": 1.0, "beta": 0.5})
    G1 = mat([3.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]).repeat(1, 4, 1)
    run(m, G1)
    G2 = mat([1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]).repeat(1, 4, 1)
    grad, w, _ = run(m, G2)
    # per table: m_main = 0.5 * (0.5 * 3 s) + 0.5 * s = 1.25 s, m_aux = 0.25 s + 0.5 s = 0.75 s
    assert float(w[1]) == pytest.approx(1.25 / 0.75, rel=1e-6)
    torch.testing.assert_close(grad, G2[0] + (1.25 / 0.75) * G2[1])


@pytest.mark.parametrize("strategy,changed", [("larger", [False, True, False]), ("smaller", [True, False, True]),
                                              ("all", [True, True, True])])
def test_metabalance_strategy_selects_which_aux_gradients_adapt(strategy, changed):
    G = torch.zeros(4, 4, 2)
    G[0] = 1.0  # main: norm 2 per table
    G[1] = 0.5  # smaller than main
    G[2] = 3.0  # larger than main
    G[3] = 0.1  # smaller
    _, w, _ = run(build_method("metabalance", NAMES, {"relax": 1.0, "strategy": strategy}), G)
    expected = [1.0, 2.0, 1 / 3, 10.0]
    for k, ch in zip(range(1, 4), changed):
        assert float(w[k]) == pytest.approx(expected[k] if ch else 1.0, rel=1e-5)


# ---------------------------------------------------------------- state ------------------------------------
STATEFUL = {"uw": {}, "gradnorm": {"w_lr": 0.05}, "dwa": {}, "famo": {}, "dbmtl": {}, "gradvac": {"beta": 0.5},
            "metabalance": {}, "nashmtl": {"update_weights_every": 2}}


def _advance(m, steps: int) -> None:
    for s in range(steps):
        G = rand_grads(100 + s, 4)
        c = torch.tensor([0.7, 0.6, 2.0, 0.9]) * (1 - 0.1 * s)
        run(m, G, c, after=c * torch.tensor([0.9, 1.05, 0.95, 0.8]))
        m.end_epoch(s, c * torch.tensor([1.0, 1.1, 0.8, 1.3]) ** s)
    if m.name == "uw":  # its state is trained by the trainer's optimizer
        with torch.no_grad():
            m.log_vars.copy_(torch.tensor([0.3, -0.2, 0.8, -0.5]))


@pytest.mark.parametrize("name", sorted(STATEFUL))
def test_state_dict_round_trip_reproduces_the_next_step(name):
    params = STATEFUL[name]
    trained = build_method(name, NAMES, params)
    _advance(trained, 3)
    restored = build_method(name, NAMES, params)
    restored.load_state_dict(trained.state_dict())
    fresh = build_method(name, NAMES, params)
    G, c = rand_grads(999, 4), torch.tensor([0.5, 0.4, 1.9, 0.7])
    after = c * 0.9
    outs = []
    for m in (trained, restored, fresh):
        torch.manual_seed(3)
        outs.append(run(m, G, c, after))
    (ga, wa, _), (gb, wb, _), (gc, wc, _) = outs
    assert torch.equal(ga, gb) and torch.equal(wa, wb)
    for key, value in trained.state_dict().items():
        other = restored.state_dict()[key]
        assert torch.equal(value, other) if isinstance(value, torch.Tensor) else value == other, key
    assert not torch.allclose(ga, gc)  # the state matters: an untrained method steps differently
