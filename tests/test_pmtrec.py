"""PMTRec: personalised weights, magnitude balancing, alignment, progressive focus, variants, integration."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.overrides import TorchFunctionMode

from pmtrec.errors import ConfigError
from pmtrec.methods import StepContext, build_method
from pmtrec.methods.base import RowGradients
from pmtrec.methods.pmtrec import PMTRec, focus_schedule

TASKS = ("rec", "social", "category", "coview")


def make_ctx(grads: torch.Tensor, touched: torch.Tensor | None = None, epoch: int = 0, epochs: int = 20,
             n_user_rows: int | None = None) -> StepContext:
    """A hand-made step: the per-task row gradients are given (zero where a task does not touch a row)."""
    K, R, d = grads.shape
    if touched is None:
        touched = torch.ones(K, R, dtype=torch.bool)
    grads = grads * touched[..., None].to(grads.dtype)
    source = RowGradients(rows=torch.zeros(R, d, dtype=grads.dtype), row_ids=torch.arange(R),
                          task_params=[[] for _ in range(K)], grads=grads)  # the gradients given
    return StepContext(losses=torch.zeros(K), task_names=TASKS[:K] if K <= 4 else tuple(f"t{k}" for k in range(K)),
                       touched=touched, n_user_rows=R if n_user_rows is None else n_user_rows,
                       epoch=epoch, epochs=epochs, step=0, source=source)


def method(name: str = "pmtrec", k: int = 3, **params) -> PMTRec:
    m = build_method(name, TASKS[:k], params)
    assert isinstance(m, PMTRec)
    return m


def scaled_dirs(norms: torch.Tensor, d: int = 5, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    """Random directions with the given norms [K, R]."""
    g = torch.randn(*norms.shape, d, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    return g / g.norm(dim=2, keepdim=True) * norms[..., None].to(dtype)


NO_FOCUS = dict(focus=False)


# ---- 1. personalised weights ------------------------------------------------------------------
def test_per_row_weights_differ_when_norms_differ_and_are_shared_when_not_personalised():
    norms = torch.tensor([[1.0, 1.0, 1.0], [1.0, 4.0, 0.25], [2.0, 2.0, 8.0]])  # [K=3, R=3]
    ctx = make_ctx(scaled_dirs(norms))
    rw = method(**NO_FOCUS).step(ctx).row_weights
    assert not torch.allclose(rw[0], rw[1]) and not torch.allclose(rw[1], rw[2])
    out = method(personalized=False, **NO_FOCUS).step(ctx)
    assert torch.allclose(out.row_weights, out.row_weights[0].expand_as(out.row_weights))
    assert torch.allclose(out.row_weights[0], out.weights.to(out.row_weights.dtype))
    # the shared weights come from the batch norms ||G_k||
    batch = ctx.grads().flatten(1).norm(dim=1)
    torch.testing.assert_close(out.weights, batch / batch.sum())


def test_softmax_weights_sum_to_one_tau_limits_and_norm_proportional_at_tau_1():
    norms = torch.tensor([[1.0, 3.0], [2.0, 0.5], [5.0, 0.5]])
    ctx = make_ctx(scaled_dirs(norms))
    rw = method(**NO_FOCUS).step(ctx).row_weights                          # tau = 1
    torch.testing.assert_close(rw.sum(1), torch.ones(2, dtype=rw.dtype))
    torch.testing.assert_close(rw, (norms / norms.sum(0)).T.to(rw.dtype))  # proportional to the norms
    rw_hot = method(tau=1e6, **NO_FOCUS).step(ctx).row_weights
    torch.testing.assert_close(rw_hot, torch.full_like(rw_hot, 1 / 3), atol=1e-5, rtol=0)
    rw_cold = method(tau=0.01, **NO_FOCUS).step(ctx).row_weights        # small tau: the largest norm wins
    assert torch.equal(rw_cold.argmax(1), norms.argmax(0)) and bool((rw_cold.max(1).values > 0.99).all())
    tau2 = method(tau=2.0, **NO_FOCUS).step(ctx).row_weights
    torch.testing.assert_close(tau2, (norms.sqrt() / norms.sqrt().sum(0)).T.to(rw.dtype))


def test_weight_sign_minus_one_favours_small_gradient_tasks():
    norms = torch.tensor([[1.0, 10.0], [10.0, 1.0]])
    ctx = make_ctx(scaled_dirs(norms), touched=torch.ones(2, 2, dtype=torch.bool))
    plus = method(k=2, **NO_FOCUS).step(ctx).row_weights
    minus = method(k=2, weight_sign=-1, **NO_FOCUS).step(ctx).row_weights
    assert plus[0, 1] > plus[0, 0] and plus[1, 0] > plus[1, 1]
    assert minus[0, 0] > minus[0, 1] and minus[1, 1] > minus[1, 0]
    torch.testing.assert_close(minus[0], torch.tensor([10 / 11, 1 / 11], dtype=minus.dtype))
    with pytest.raises(Exception, match="weight_sign"):
        method(weight_sign=0)


def test_only_touching_tasks_take_part_and_row_weights_sum_to_one():
    torch.manual_seed(0)
    touched = torch.tensor([[1, 1, 0, 1, 0], [1, 0, 1, 1, 0], [0, 0, 1, 1, 1], [1, 0, 0, 0, 1]], dtype=torch.bool)
    ctx = make_ctx(torch.randn(4, 5, 6), touched, epoch=4)
    for name in ("pmtrec", "pmtrec-no-personal", "pmtrec-no-balance", "pmtrec-none", "pmtrec-no-focus"):
        out = method(name, k=4).step(ctx)
        assert out.row_weights.shape == (5, 4)
        assert float(out.row_weights[~touched.T].abs().max()) == 0.0
        torch.testing.assert_close(out.row_weights.sum(1), torch.ones(5))
        torch.testing.assert_close(out.weights.sum(), torch.tensor(1.0))
        assert out.task_param_scale is None  # task-specific parameters get their own gradient unchanged


def test_norm_by_batch_mean_removes_each_tasks_global_scale():
    # task 1's gradients are 100x task 0's everywhere; the rows' relative profile is what matters then
    base = torch.tensor([[1.0, 2.0, 4.0], [1.0, 1.0, 1.0]])
    norms = base * torch.tensor([[1.0], [100.0]])
    ctx = make_ctx(scaled_dirs(norms, seed=3), touched=torch.ones(2, 3, dtype=torch.bool))
    raw = method(k=2, **NO_FOCUS).step(ctx).row_weights
    assert bool((raw[:, 1] > 0.9).all())  # the large-scale task dominates every row
    rel = method(k=2, norm_by_batch_mean=True, **NO_FOCUS).step(ctx).row_weights
    same = make_ctx(scaled_dirs(base, seed=3), touched=torch.ones(2, 3, dtype=torch.bool))
    torch.testing.assert_close(rel, method(k=2, norm_by_batch_mean=True, **NO_FOCUS).step(same).row_weights)
    n = base / base.mean(1, keepdim=True)
    torch.testing.assert_close(rel, (n / n.sum(0)).T.to(rel.dtype))
    # rows touched more by the main task (row 2) lean more on it
    assert rel[2, 0] > rel[1, 0] > rel[0, 0]


# ---- 2. gradient magnitude balancing -------------------------------------------------------------
@pytest.mark.parametrize("factor", [1e-3, 1e3])
@pytest.mark.parametrize("name", ["pmtrec", "pmtrec-no-progressive", "pmtrec-no-align"])
def test_balance_scaling_a_rows_gradients_keeps_its_weights_and_direction(factor, name):
    torch.manual_seed(1)
    g = torch.randn(3, 4, 8, dtype=torch.float64) * torch.tensor([1.0, 30.0, 0.05])[:, None, None]
    touched = torch.ones(3, 4, dtype=torch.bool)
    touched[0, 3] = False
    m = method(name, magnitude="main", focus_rows="main")  # focus_rows="all" would shorten row 3 (own test)
    a = m.step(make_ctx(g, touched, epoch=5))
    scale = torch.ones(4, dtype=torch.float64)
    scale[1] = factor
    scale[3] = factor
    b = m.step(make_ctx(g * scale[None, :, None], touched, epoch=5))
    torch.testing.assert_close(a.row_weights, b.row_weights)
    ua = a.row_grad / a.row_grad.norm(dim=1, keepdim=True)
    ub = b.row_grad / b.row_grad.norm(dim=1, keepdim=True)
    torch.testing.assert_close(ua, ub)
    # the magnitude follows the row: main-task norm where main touches, else the mean task norm
    torch.testing.assert_close(b.row_grad.norm(dim=1), a.row_grad.norm(dim=1) * scale)
    torch.testing.assert_close(a.row_grad.norm(dim=1)[:3], g[0, :3].norm(dim=1))
    torch.testing.assert_close(a.row_grad.norm(dim=1)[3], g[1:, 3].norm(dim=1).mean())


@pytest.mark.parametrize("factor", [1e-3, 1e3])
def test_sum_magnitude_takes_the_ew_step_length_and_keeps_the_balanced_direction(factor):
    torch.manual_seed(3)
    g = torch.randn(3, 5, 8, dtype=torch.float64) * torch.tensor([1.0, 30.0, 0.05])[:, None, None]
    touched = torch.ones(3, 5, dtype=torch.bool)
    touched[0, 4] = False  # a row the main task does not touch
    ctx = make_ctx(g, touched, epoch=5)
    out = method("pmtrec", magnitude="sum", focus_rows="main").step(ctx).row_grad
    ew_len = (g * touched[..., None]).sum(0).norm(dim=1)
    torch.testing.assert_close(out.norm(dim=1), ew_len)
    main = method("pmtrec", magnitude="main", focus_rows="main").step(ctx).row_grad
    torch.testing.assert_close(out / out.norm(dim=1, keepdim=True), main / main.norm(dim=1, keepdim=True))
    # scaling one row's gradients together scales its step, never its direction or weights
    scale = torch.ones(5, dtype=torch.float64)
    scale[2] = factor
    scaled = method("pmtrec", magnitude="sum", focus_rows="main").step(make_ctx(g * scale[None, :, None], touched, epoch=5))
    torch.testing.assert_close(scaled.row_grad, out * scale[:, None])


def test_norms_magnitude_takes_the_sum_of_the_rows_task_norms():
    torch.manual_seed(4)
    g = torch.randn(3, 5, 8, dtype=torch.float64) * torch.tensor([1.0, 30.0, 0.05])[:, None, None]
    touched = torch.ones(3, 5, dtype=torch.bool)
    touched[0, 4] = False
    touched[2, 1] = False
    ctx = make_ctx(g, touched, epoch=5)
    out = method("pmtrec", magnitude="norms", tau=0.5, focus_rows="main").step(ctx).row_grad
    expected = (g.norm(dim=2) * touched).sum(0)
    torch.testing.assert_close(out.norm(dim=1), expected)
    ref = method("pmtrec", magnitude="sum", tau=0.5, focus_rows="main").step(ctx).row_grad
    torch.testing.assert_close(out / out.norm(dim=1, keepdim=True), ref / ref.norm(dim=1, keepdim=True))
    with pytest.raises(ConfigError, match="magnitude must be one of sum, norms, main, got 'largest'"):
        method("pmtrec", magnitude="largest")


def test_balance_off_lets_a_1000x_task_dominate_and_balance_on_does_not():
    torch.manual_seed(2)
    g = torch.randn(2, 6, 8, dtype=torch.float64)
    g[1] *= 1000.0
    ctx = make_ctx(g, torch.ones(2, 6, dtype=torch.bool))
    for name in ("pmtrec-none", "pmtrec-no-balance"):
        out = method(name, k=2, focus=False).step(ctx).row_grad
        cos_aux = torch.nn.functional.cosine_similarity(out, g[1], dim=1)
        assert bool((cos_aux > 0.99).all()), name
    bal = method("pmtrec", k=2, focus=False, personalized=False, magnitude="main").step(ctx)  # unit directions
    out = bal.row_grad
    torch.testing.assert_close(out.norm(dim=1), g[0].norm(dim=1))  # main-task magnitude, not 1000x
    # with balance on and uniform-ish temperature the main direction is not swamped
    hot = method("pmtrec", k=2, focus=False, tau=1e12, magnitude="main").step(ctx).row_grad
    u = g / g.norm(dim=2, keepdim=True)
    expect = (u[0] + u[1]) / (u[0] + u[1]).norm(dim=1, keepdim=True) * g[0].norm(dim=1, keepdim=True)
    torch.testing.assert_close(hot, expect, rtol=1e-5, atol=1e-8)


# ---- 3a. alignment -----------------------------------------------------------------------------
@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), k=st.integers(2, 4), r=st.integers(1, 7), d=st.integers(1, 6),
       personalized=st.booleans(), balance=st.booleans(), progressive=st.booleans(),
       sign=st.sampled_from([1, -1]), tau=st.sampled_from([0.1, 1.0, 10.0]), epoch=st.integers(0, 15),
       log_scales=st.lists(st.floats(-3, 3), min_size=4, max_size=4))
def test_alignment_never_pushes_a_row_against_its_main_gradient(seed, k, r, d, personalized, balance, progressive,
                                                                  sign, tau, epoch, log_scales):
    gen = torch.Generator().manual_seed(seed)
    g = torch.randn(k, r, d, generator=gen, dtype=torch.float64)
    g = g * torch.tensor([10.0 ** s for s in log_scales[:k]], dtype=torch.float64)[:, None, None]
    g[1:] -= 2.0 * g[:1]  # make conflicts with the main task common
    touched = torch.rand(k, r, generator=gen) < 0.7
    touched[:, 0] = True
    m = method(k=k, personalized=personalized, balance=balance, progressive=progressive, align=True,
               weight_sign=sign, tau=tau)
    ctx = make_ctx(g, touched, epoch=epoch)
    out = m.step(ctx).row_grad
    g0 = ctx.grads()[0]
    dot = (out * g0).sum(1)
    # round-off is relative to the parts combined (a row whose aligned parts cancel leaves only
    # rounding noise, of either sign): sum_k ||g[x,k]|| bounds them up to the weights
    parts = ctx.grads().norm(dim=2).sum(0)
    assert bool((dot >= -1e-9 * k * parts * g0.norm(dim=1)).all())
    assert bool(torch.isfinite(out).all())


def test_without_alignment_a_conflicting_task_can_push_against_main():
    g = torch.tensor([[[1.0, 0.0]], [[-10.0, 1.0]]], dtype=torch.float64)
    ctx = make_ctx(g, torch.ones(2, 1, dtype=torch.bool))
    off = method(k=2, align=False, progressive=False).step(ctx).row_grad
    on = method(k=2, align=True, progressive=False, magnitude="main").step(ctx).row_grad
    assert float((off * g[0]).sum()) < 0
    assert float((on * g[0]).sum()) > 0
    # the aligned auxiliary direction keeps only its orthogonal part: w0*(1,0) + w1*(0, 1/sqrt(101))
    w = torch.tensor([1.0, math.sqrt(101)]) / (1 + math.sqrt(101))
    c = torch.tensor([w[0], w[1] / math.sqrt(101)], dtype=torch.float64)
    torch.testing.assert_close(on[0], c / c.norm())


# ---- 3b. progressive focus ------------------------------------------------------------------------
@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_progressive_schedule_hits_its_endpoints(schedule):
    m = method(focus_max=0.5, focus_warmup=10, focus_schedule=schedule)
    assert m.focus_strength(0) == 0.0
    assert m.focus_strength(10) == pytest.approx(0.5) and m.focus_strength(25) == pytest.approx(0.5)
    mids = [m.focus_strength(e) for e in range(11)]
    assert all(a <= b for a, b in zip(mids, mids[1:]))
    assert mids[5] == pytest.approx(0.25)  # both schedules are at half height at half warmup
    if schedule == "linear":
        assert mids[2] == pytest.approx(0.1)
    else:
        assert mids[2] == pytest.approx(0.25 * (1 - math.cos(math.pi * 0.2)))
    assert focus_schedule(3, 0.7, 0, schedule) == pytest.approx(0.7)  # no warmup: full focus at once
    assert method(progressive=False).focus_strength(20) == 0.0
    assert method(focus=False).focus_strength(20) == 0.0


def test_progressive_mixing_moves_weight_to_the_main_task():
    norms = torch.tensor([[1.0, 0.0], [3.0, 1.0], [4.0, 1.0]])
    touched = norms > 0
    ctx0 = make_ctx(scaled_dirs(norms), touched, epoch=0)
    ctx10 = make_ctx(scaled_dirs(norms), touched, epoch=10)
    m = method(align=False, focus_max=0.5, focus_warmup=10)
    w0, w10 = m.step(ctx0).row_weights, m.step(ctx10).row_weights
    torch.testing.assert_close(w0[0], torch.tensor([1 / 8, 3 / 8, 4 / 8], dtype=w0.dtype))
    torch.testing.assert_close(w10[0], torch.tensor([0.5 / 8 + 0.5, 1.5 / 8, 2 / 8], dtype=w0.dtype))
    torch.testing.assert_close(w10[1], w0[1])  # the main task does not touch row 1: unchanged
    torch.testing.assert_close(w10[1].sum(), torch.tensor(1.0, dtype=w0.dtype))


def test_focus_on_all_rows_damps_rows_without_the_main_task_by_one_minus_b():
    norms = torch.tensor([[1.0, 0.0, 2.0], [3.0, 1.0, 0.0], [4.0, 1.0, 1.0]])
    touched = norms > 0
    grads = scaled_dirs(norms)
    ctx = make_ctx(grads, touched, epoch=5)                  # b = 0.25 with focus_max 0.5, warmup 10
    main_rows, all_rows = (method(focus_rows=r, focus_max=0.5, focus_warmup=10) for r in ("main", "all"))
    a, b = main_rows.step(ctx), all_rows.step(ctx)
    torch.testing.assert_close(b.row_grad[1], 0.75 * a.row_grad[1])   # row 1: no main task
    torch.testing.assert_close(b.row_grad[[0, 2]], a.row_grad[[0, 2]])
    full = method(focus_rows="all", focus_max=1.0, focus_warmup=0).step(make_ctx(grads, touched, epoch=3))
    torch.testing.assert_close(full.row_grad[1], torch.zeros_like(full.row_grad[1]))
    cos = torch.nn.functional.cosine_similarity(full.row_grad[[0, 2]], grads[0][[0, 2]], dim=1)
    torch.testing.assert_close(cos, torch.ones(2, dtype=cos.dtype))     # the main task's direction alone
    with pytest.raises(ConfigError, match="focus_rows must be one of main, all"):
        method(focus_rows="some")


# ---- variants -------------------------------------------------------------------------------------
def test_pmtrec_none_equals_ews_row_gradient():
    """pmtrec-none = sum_k g[x,k] over the tasks touching x: exactly EW's row gradient."""
    torch.manual_seed(3)
    K, R, d = 4, 9, 5
    rows = torch.randn(R, d, requires_grad=True)
    touched = torch.rand(K, R) < 0.6
    touched[0, :3] = True
    touched[torch.randint(K, (R,)), torch.arange(R)] = True  # every row is in some task's batch
    targets = torch.randn(K, R, d)
    # a tiny differentiable per-task loss that depends only on the rows it touches
    losses = torch.stack([((rows * targets[k]).sum(1).sin() * touched[k]).sum() + ((rows ** 2).sum(1) * touched[k]).sum()
                          for k in range(K)])
    ctx = StepContext.for_rows(losses=losses, task_names=TASKS, rows=rows, n_user_rows=4, row_ids=torch.arange(R),
                      touched=touched, task_params=[[] for _ in range(K)], epoch=7, epochs=20, step=0)
    ew_grad, = torch.autograd.grad(losses.sum(), rows, retain_graph=True)  # EW: backprop the plain sum
    out = method("pmtrec-none", k=K).step(ctx)
    torch.testing.assert_close(out.row_grad, ew_grad, rtol=1e-6, atol=1e-6)
    G = ctx.grads()
    w = touched.T.float() / touched.T.float().sum(1, keepdim=True)            # uniform over touching tasks
    independent = touched.float().sum(0)[:, None] * torch.einsum("rk,krd->rd", w, G)
    torch.testing.assert_close(out.row_grad, independent, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(out.row_grad, (G * touched[..., None]).sum(0), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(out.row_weights, w)
    torch.testing.assert_close(out.weights, torch.full((K,), 0.25))


@pytest.mark.parametrize("name", ["pmtrec", "pmtrec-no-personal", "pmtrec-no-focus", "pmtrec-no-align",
                                  "pmtrec-no-progressive", "pmtrec-no-balance", "pmtrec-none"])
@pytest.mark.parametrize("kw", [{}, {"weight_sign": -1}, {"norm_by_batch_mean": True}, {"tau": 0.3}])
def test_a_row_touched_only_by_the_main_task_gets_exactly_its_main_gradient(name, kw):
    torch.manual_seed(4)
    g = torch.randn(3, 5, 4) * torch.tensor([1.0, 100.0, 0.01])[:, None, None]
    touched = torch.ones(3, 5, dtype=torch.bool)
    touched[1:, :2] = False  # rows 0 and 1: main task only
    ctx = make_ctx(g, touched, epoch=6)
    out = method(name, **kw).step(ctx)
    assert torch.equal(out.row_grad[:2], ctx.grads()[0, :2])
    assert torch.equal(out.row_weights[:2], torch.tensor([[1.0, 0.0, 0.0]] * 2))


def test_variants_switch_off_what_they_name():
    for name, attrs in {
        "pmtrec": dict(personalized=True, balance=True, align=True, progressive=True),
        "pmtrec-no-personal": dict(personalized=False, balance=True, align=True, progressive=True),
        "pmtrec-no-focus": dict(personalized=True, balance=True, align=False, progressive=False),
        "pmtrec-no-align": dict(personalized=True, balance=True, align=False, progressive=True),
        "pmtrec-no-progressive": dict(personalized=True, balance=True, align=True, progressive=False),
        "pmtrec-no-balance": dict(personalized=True, balance=False, align=True, progressive=True),
        "pmtrec-none": dict(personalized=False, balance=False, align=False, progressive=False),
    }.items():
        m = method(name)
        assert {a: getattr(m, a) for a in attrs} == attrs, name
    m = method()
    assert (m.tau, m.focus_max, m.focus_warmup, m.focus_schedule, m.weight_sign, m.norm_by_batch_mean) == \
        (1.0, 0.5, 10.0, "linear", 1, False)


@pytest.mark.parametrize("bad", [{"tau": 0}, {"focus_max": 1.5}, {"focus_warmup": -1}, {"focus_schedule": "step"},
                                 {"eps": 0}])
def test_bad_parameters_are_config_errors(bad):
    from pmtrec.errors import ConfigError

    with pytest.raises(ConfigError, match=next(iter(bad))):
        build_method("pmtrec", TASKS, bad)


def test_zero_gradients_and_untouched_rows_are_safe():
    g = torch.zeros(3, 4, 5)
    g[0, 0] = 1.0
    g[1, 1] = 2.0
    touched = torch.ones(3, 4, dtype=torch.bool)
    touched[:, 3] = False
    for name in ("pmtrec", "pmtrec-none", "pmtrec-no-personal"):
        for kw in ({}, {"weight_sign": -1}, {"norm_by_batch_mean": True}):
            out = method(name, **kw).step(make_ctx(g, touched, epoch=3))
            assert bool(torch.isfinite(out.row_grad).all()) and bool(torch.isfinite(out.row_weights).all())
            torch.testing.assert_close(out.row_grad[0], g[0, 0])        # only main has a gradient on row 0
            assert float(out.row_grad[2:].abs().max()) == 0.0
            # row 1: main touches it with a zero gradient; the social gradient takes over at its own size
            assert float(out.row_grad[1].norm()) == pytest.approx(float(g[1, 1].norm()))


# ---- vectorisation ---------------------------------------------------------------------------------
class _CountTorchCalls(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.calls += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("name", ["pmtrec", "pmtrec-no-personal", "pmtrec-no-balance", "pmtrec-none"])
def test_no_python_loop_over_rows(name):
    """The number of torch operations one step issues does not grow with the number of rows."""
    counts = []
    for R in (5, 2000):
        torch.manual_seed(0)
        touched = torch.rand(4, R) < 0.5
        touched[:, :4] = torch.eye(4, dtype=torch.bool)
        ctx = make_ctx(torch.randn(4, R, 8), touched, epoch=3)
        m = method(name, k=4)
        with _CountTorchCalls() as mode:
            m.step(ctx)
        counts.append(mode.calls)
    assert counts[0] == counts[1] and counts[0] < 200


# ---- integration -----------------------------------------------------------------------------------
def _prepare(cfg: dict):
    """The prepared dataset in memory (the data layer's in-memory entry point)."""
    import pmtrec.data as data

    if hasattr(data, "prepare_in_memory"):
        return data.prepare_in_memory(cfg)
    pre = getattr(data.preprocess, "preprocess", data.preprocess)
    return pre(data.load_source(cfg), cfg["preprocess"])


@pytest.fixture(scope="module")
def tiny_run():
    from pmtrec.config import load_config
    from pmtrec.train import train

    cfg = load_config(overrides=["dataset.synthetic.size=tiny", "train.progress=false", "train.threads=1",
                                 "train.epochs=2", "train.batch_size=256", "train.method=pmtrec"])
    data = _prepare(cfg)
    return train(cfg, data, log=lambda *_: None)


def test_pmtrec_trains_on_tiny_and_logs_per_group_row_weights(tiny_run):
    r = tiny_run
    assert r["method"] == "pmtrec" and np.isfinite(r["test"]["overall"]["ndcg@20"])
    tasks = r["tasks"]
    assert tasks[0] == "rec" and len(tasks) >= 3
    last = r["curves"][-1]
    for table in ("row_weight_by_user_group", "row_weight_by_item_group"):
        groups = last[table]
        assert len(groups) >= 2
        for weights in groups.values():
            assert set(weights) == set(tasks)
            # conditional means (each task over the rows it shares with rec), so in [0, 1] each
            assert all(0.0 <= w <= 1.0 for w in weights.values())
            assert 0.0 < weights["rec"] < 1.0
    # per-row weights differ across rows: the group tables differ, and the logged mean is not uniform
    users = list(last["row_weight_by_user_group"].values())
    assert any(abs(a["rec"] - b["rec"]) > 1e-4 for a, b in zip(users, users[1:]))
    assert sum(last["weight"].values()) == pytest.approx(1.0, abs=1e-6)


def test_pmtrec_per_row_weights_differ_in_a_real_step():
    from pmtrec.config import load_config
    from pmtrec.train import Trainer, gather_batch, task_losses

    cfg = load_config(overrides=["dataset.synthetic.size=tiny", "train.progress=false", "train.threads=1",
                                 "train.method=pmtrec", "train.batch_size=256"])
    tr = Trainer(cfg, _prepare(cfg))
    fields = tr._sample(next(tr.tasks[0].epoch_batches(256, tr.gen)))
    batch = gather_batch(fields)
    rows = torch.cat([tr.model.user.detach()[batch.user_ids], tr.model.item.detach()[batch.item_ids]])
    rows.requires_grad_()
    ctx = StepContext.for_rows(task_losses(tr.tasks, batch, rows), tr.task_names, rows, len(batch.user_ids),
                      torch.cat([batch.user_ids, batch.item_ids]), batch.touched,
                      [list(t.parameters()) for t in tr.tasks], 0, 1, 0)
    out = tr.method.step(ctx)
    multi = batch.touched.sum(0) > 1
    rw = out.row_weights[multi]
    assert len(rw) > 10 and float(rw[:, 0].std()) > 1e-3
    torch.testing.assert_close(out.row_weights.sum(1), torch.ones(len(rw) + int((~multi).sum())))
