"""The two PMTRec controls (issue 18): `static-schedule` (EW + PMTRec's schedule on the auxiliary
weight) and `pmtrec-shuffled` (PMTRec's per-row weights permuted across the main task's rows)."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import tiny_config
from pmtrec.errors import ConfigError
from pmtrec.methods import StepContext, build_method, entry
from pmtrec.methods.base import RowGradients
from pmtrec.methods.pmtrec import PMTRec, shuffle_row_weights
from pmtrec.train import Trainer
from test_pmtrec import _CountTorchCalls  # the torch-op counter of PMTRec's own vectorisation test

TASKS = ("rec", "social", "category", "coview")
QUIET = lambda *_: None  # noqa: E731


def loss_ctx(G: torch.Tensor, c: torch.Tensor, epoch: int = 0, epochs: int = 20) -> StepContext:
    """Task k has loss ``c_k + <G_k, rows>`` at ``rows = 0``: value ``c_k``, row gradient ``G_k``."""
    K, R, d = G.shape
    rows = torch.zeros(R, d, requires_grad=True)
    losses = c + (G * rows).sum((1, 2))
    return StepContext.for_rows(losses=losses, task_names=TASKS[:K], rows=rows, n_user_rows=R // 2,
                                row_ids=torch.arange(R), touched=G.abs().sum(-1) > 0,
                                task_params=[[] for _ in range(K)], epoch=epoch, epochs=epochs, step=0)


def grad_ctx(grads: torch.Tensor, touched: torch.Tensor, n_user_rows: int, step: int = 0,
             epoch: int = 3) -> StepContext:
    """A step whose per-task row gradients are given (zeroed where a task does not touch a row)."""
    K, R, d = grads.shape
    grads = grads * touched[..., None].to(grads.dtype)
    source = RowGradients(rows=torch.zeros(R, d, dtype=grads.dtype), row_ids=torch.arange(R),
                          task_params=[[] for _ in range(K)], grads=grads)
    return StepContext(losses=torch.zeros(K), task_names=TASKS[:K], touched=touched, n_user_rows=n_user_rows,
                       epoch=epoch, epochs=20, step=step, source=source)


def one_step(method, ctx: StepContext) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, gradient of the combined loss w.r.t. the rows) of one loss-weighting step."""
    out = method.step(ctx)
    return out.loss.detach(), torch.autograd.grad(out.loss, ctx.source.rows)[0]


def comparable(result: dict) -> dict:
    """A result record without its method name, wall-clock times, memory and process identity."""
    drop = {"method", "method_params", "epoch_time_s", "wall_time_s", "memory", "pid", "host"}
    out = {k: v for k, v in result.items() if k not in drop}
    out["curves"] = [{k: v for k, v in c.items() if k not in ("train_time_s", "eval_time_s")}
                     for c in result["curves"]]
    return out


# ---- static-schedule -----------------------------------------------------------------------------
def test_static_schedule_without_focus_is_ew_bit_for_bit():
    G = torch.randn(4, 6, 5, generator=torch.Generator().manual_seed(0))
    c = torch.tensor([0.7, 0.2, 1.5, 0.9])
    for epoch in (0, 4, 30):
        ew = build_method("ew", TASKS)
        ctl = build_method("static-schedule", TASKS, {"focus_max": 0.0})
        (loss_a, grad_a), (loss_b, grad_b) = one_step(ew, loss_ctx(G, c, epoch)), one_step(ctl, loss_ctx(G, c, epoch))
        assert torch.equal(loss_a, loss_b) and torch.equal(grad_a, grad_b)
        assert torch.equal(ew.step(loss_ctx(G, c, epoch)).weights, ctl.step(loss_ctx(G, c, epoch)).weights)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("epoch", [0, 2, 4, 10, 25])
def test_static_schedule_scales_the_auxiliary_tasks_by_one_minus_pmtrecs_b(epoch, schedule):
    aux, bmax, warmup = 0.8, 0.6, 8
    m = build_method("static-schedule", TASKS, {"aux_weight": aux, "focus_max": bmax, "focus_warmup": warmup,
                                                "focus_schedule": schedule})
    # PMTRec's own b(t) with the same settings, at the same (0-based) epoch
    b = PMTRec(TASKS, focus_max=bmax, focus_warmup=warmup, focus_schedule=schedule).focus_strength(epoch)
    p = min(epoch / warmup, 1.0)
    assert b == pytest.approx(bmax * (p if schedule == "linear" else 0.5 * (1 - math.cos(math.pi * p))))
    G = torch.randn(4, 6, 5, generator=torch.Generator().manual_seed(1))
    c = torch.tensor([0.5, 1.0, 2.0, 0.25])
    out = m.step(loss_ctx(G, c, epoch))
    torch.testing.assert_close(out.weights, torch.tensor([1.0] + [aux * (1 - b)] * 3))
    loss, grad = one_step(m, loss_ctx(G, c, epoch))
    torch.testing.assert_close(loss, c[0] + aux * (1 - b) * c[1:].sum())
    torch.testing.assert_close(grad, G[0] + aux * (1 - b) * G[1:].sum(0))


def test_static_schedule_defaults_follow_pmtrec_and_its_catalogue_entry():
    e, p = entry("static-schedule"), entry("pmtrec").params
    assert e.kind == "method" and e.family == "loss weighting" and not e.stateful and not e.uses_grads
    assert (e.params["focus_max"], e.params["focus_warmup"], e.params["focus_schedule"]) == \
        (p["focus_max"], p["focus_warmup"], p["focus_schedule"])
    assert set(e.tunable) == {"aux_weight", "focus_max"} and e.params["aux_weight"] == 1.0
    assert not build_method("static-schedule", TASKS).state_dict()


@pytest.mark.parametrize("bad,key", [({"aux_weight": -0.1}, "aux_weight"), ({"aux_weight": "1"}, "aux_weight"),
                                     ({"focus_max": 1.5}, "focus_max"), ({"focus_warmup": -1}, "focus_warmup"),
                                     ({"focus_schedule": "step"}, "focus_schedule"), ({"tau": 1.0}, "tau")])
def test_static_schedule_bad_parameters_are_one_line_config_errors(bad, key):
    with pytest.raises(ConfigError, match=key) as exc:
        build_method("static-schedule", TASKS, bad)
    assert "\n" not in str(exc.value)


def test_static_schedule_without_focus_trains_exactly_like_ew(tiny_data):
    ew = Trainer(tiny_config("train.method=ew", epochs=2, batch_size=512), tiny_data).fit(log=QUIET)
    ctl = Trainer(tiny_config("train.method=static-schedule", "train.method_params.focus_max=0", epochs=2,
                              batch_size=512), tiny_data).fit(log=QUIET)
    assert ctl["method"] == "static-schedule"
    same = lambda r: {k: v for k, v in comparable(r).items() if k not in ("config", "config_hash")}  # noqa: E731
    assert same(ctl) == same(ew)


# ---- pmtrec-shuffled -----------------------------------------------------------------------------
def mixed_step(R: int = 40, d: int = 6, seed: int = 0, step: int = 0, n_user_rows: int | None = None):
    """Random gradients: users touched by rec/social, items by rec/category/coview, at random."""
    gen = torch.Generator().manual_seed(seed)
    n_user_rows = R // 2 if n_user_rows is None else n_user_rows
    touched = torch.rand(4, R, generator=gen) < 0.7
    touched[1, n_user_rows:] = False            # social: users only
    touched[2:, :n_user_rows] = False           # category, co-view: items only
    touched[0, :4] = False                      # a few rows outside the main task's batch
    grads = torch.randn(4, R, d, generator=gen, dtype=torch.float64) * torch.rand(4, R, 1, generator=gen,
                                                                                   dtype=torch.float64)
    return grad_ctx(grads, touched, n_user_rows, step=step)


def sorted_rows(w: torch.Tensor) -> list[tuple[float, ...]]:
    return sorted(map(tuple, w.tolist()))


def test_shuffled_weights_are_pmtrecs_weights_on_other_rows_of_the_same_kind():
    ctx = mixed_step(R=60)
    ref = build_method("pmtrec", TASKS).step(ctx)
    out = build_method("pmtrec-shuffled", TASKS).step(ctx)
    main = ctx.touched[0]
    users = torch.arange(60) < ctx.n_user_rows
    # the same multiset of weight vectors, within each table and each set of tasks
    tasks = (ctx.touched.long() << torch.arange(4)[:, None]).sum(0)
    for g in set(zip(users.tolist(), tasks.tolist(), main.tolist())):
        rows = (users == g[0]) & (tasks == g[1]) & (main == g[2])
        assert sorted_rows(out.row_weights[rows]) == sorted_rows(ref.row_weights[rows])
    # hence each task's mean weight (the logged weights) is unchanged, up to summation order
    torch.testing.assert_close(out.weights, ref.weights, rtol=1e-12, atol=1e-12)
    # but assigned to other rows; rows outside the main task's batch keep theirs
    moved = (out.row_weights != ref.row_weights).any(1)
    assert int(moved.sum()) >= 10 and not bool(moved[~main].any())
    # every row still weighs exactly its own tasks
    assert torch.equal(out.row_weights > 0, ref.row_weights > 0)


def test_only_the_weights_move_the_gradients_stay_with_their_rows():
    ctx = mixed_step(R=50, seed=4)
    # without balance or focus: out[x] = |T_x| sum_k w[x,k] g[x,k], with the row's own g
    out = build_method("pmtrec-shuffled", TASKS, {"balance": False, "focus": False}).step(ctx)
    g, w = ctx.grads(), out.row_weights.T
    expect = ctx.touched.sum(0)[:, None] * (w[..., None] * g).sum(0)
    single = ctx.touched[0] & (ctx.touched.sum(0) == 1)
    expect[single] = g[0, single]
    torch.testing.assert_close(out.row_grad, expect)
    ref = build_method("pmtrec", TASKS, {"balance": False, "focus": False}).step(ctx)
    assert not torch.allclose(out.row_grad, ref.row_grad)


def test_a_single_main_row_per_kind_gives_pmtrec_exactly():
    # one user row and one item row share the main task with others: nothing to permute
    grads = torch.randn(4, 4, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    touched = torch.tensor([[1, 0, 1, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 0]], dtype=torch.bool)
    ctx = grad_ctx(grads, touched, n_user_rows=2)
    ref = build_method("pmtrec", TASKS).step(ctx)
    out = build_method("pmtrec-shuffled", TASKS).step(ctx)
    assert torch.equal(out.row_grad, ref.row_grad) and torch.equal(out.row_weights, ref.row_weights)


def test_the_permutation_depends_on_the_step_only():
    a = build_method("pmtrec-shuffled", TASKS).step(mixed_step(step=7)).row_weights
    b = build_method("pmtrec-shuffled", TASKS).step(mixed_step(step=7)).row_weights
    c = build_method("pmtrec-shuffled", TASKS).step(mixed_step(step=8)).row_weights
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not build_method("pmtrec-shuffled", TASKS).state_dict()  # nothing to checkpoint


def test_shuffle_is_a_permutation_within_groups():
    gen = torch.Generator().manual_seed(5)
    mask = torch.rand(3, 500, generator=gen) < 0.6
    w = torch.arange(3 * 500, dtype=torch.float64).reshape(3, 500)  # every column distinct
    out = shuffle_row_weights(w, mask, n_user_rows=200, step=3)
    src = out[0].long()                                      # which column each row got
    assert sorted(src.tolist()) == list(range(500))                # a permutation
    key = lambda r: (r >= 200, tuple(mask[:, r].tolist()) if mask[0, r] else ("self", r))  # noqa: E731
    assert all(key(int(s)) == key(r) for r, s in enumerate(src))   # within table and task set
    assert torch.equal(out, w[:, src])                              # whole vectors move together
    assert float((src != torch.arange(500)).float().mean()) > 0.5  # and most of them do move


def test_shuffle_has_no_python_loop_over_rows():
    counts = []
    for R in (8, 3000):
        ctx = mixed_step(R=R)
        m = build_method("pmtrec-shuffled", TASKS)
        with _CountTorchCalls() as mode:
            m.step(ctx)
        counts.append(mode.calls)
    assert counts[0] == counts[1]


def test_shuffled_variant_resumes_exactly(tiny_data, tmp_path):
    cfg = lambda: tiny_config("train.lr=0.01", "train.method=pmtrec-shuffled")  # noqa: E731
    full = Trainer(cfg(), tiny_data).fit(log=QUIET)
    ckpt = tmp_path / "run.ckpt"
    part = Trainer(cfg(), tiny_data)
    part.epochs = 1  # stop after the first epoch, as if killed
    part.fit(checkpoint=ckpt, log=QUIET)
    resumed = Trainer(cfg(), tiny_data).fit(checkpoint=ckpt, log=QUIET)
    assert comparable(resumed) == comparable(full)
    ref = Trainer(tiny_config("train.lr=0.01", "train.method=pmtrec"), tiny_data).fit(log=QUIET)
    assert comparable(ref)["curves"] != comparable(full)["curves"]  # the shuffle changes training
