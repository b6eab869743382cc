"""PMTRec's second-round switches (issue 19): weighting, per-sample norms, per-entity memory, cosine focus."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from pmtrec.errors import ConfigError, TrainingError
from pmtrec.methods import build_method
from pmtrec.training.rows import gather_batch
from test_pmtrec import NO_FOCUS, TASKS, _CountTorchCalls, make_ctx, method, scaled_dirs

# every new mode, alone and combined (the defaults are "log_norms", "total", "none")
MODES = {
    "softmax_norms": dict(weighting="softmax_norms"),
    "cosine": dict(weighting="cosine"),
    "per_sample": dict(norms="per_sample"),
    "ema": dict(memory="ema"),
    "ema_pool": dict(memory="ema", memory_pool=True),
    "softmax_per_sample_ema": dict(weighting="softmax_norms", norms="per_sample", memory="ema", memory_decay=0.5),
    "cosine_ema_pool": dict(weighting="cosine", memory="ema", memory_pool=True, gamma=0.5, tau_end=0.3),
}
DEFAULTS = dict(weighting="log_norms", norms="total", memory="none", memory_pool=False)


def ctx_of(grads, touched=None, counts=None, row_ids=None, n_user_rows=None, epoch=0, step=0):
    """make_ctx with touch counts (default 1 where touched), the rows' table ids and the step."""
    ctx = make_ctx(grads, touched, epoch=epoch, n_user_rows=n_user_rows)
    ctx.step = step
    ctx.touch_counts = ctx.touched.float() if counts is None else counts
    if row_ids is not None:
        ctx.source.row_ids = row_ids
    return ctx


def random_step(seed: int, k: int = 4, r: int = 9, d: int = 5, nu: int = 4, n_ids: int = 12):
    """A random step: gradients, touches (main task on rows 0-5), counts and distinct ids per table."""
    gen = torch.Generator().manual_seed(seed)
    g = torch.randn(k, r, d, generator=gen, dtype=torch.float64) * torch.rand(k, r, 1, generator=gen,
                                                                              dtype=torch.float64) * 5
    touched = torch.rand(k, r, generator=gen) < 0.7
    touched[0, :6] = True
    touched[1:, :2] = False   # rows 0-1: the main task alone
    touched[1, 2:] |= ~touched[:, 2:].any(0)  # every row is in some task's batch
    counts = torch.randint(1, 4, (k, r), generator=gen).float() * touched
    ids = torch.cat([torch.randperm(n_ids, generator=gen)[:nu], torch.randperm(n_ids, generator=gen)[:r - nu]])
    return g, touched, counts, ids, nu


# ---- defaults: today's behaviour, bit for bit ----------------------------------------------------
@pytest.mark.parametrize("base", [{}, {"personalized": False}, {"balance": False}, {"norm_by_batch_mean": True},
                                  {"shuffle_rows": True}, {"weight_sign": -1, "tau": 0.3}])
def test_defaults_and_idle_knobs_reproduce_todays_step_bit_for_bit(base):
    g, touched, counts, ids, nu = random_step(0)
    ref = method(k=4, **base).step(make_ctx(g, touched, epoch=4, n_user_rows=nu))  # no counts, as today
    for extra in (DEFAULTS, dict(DEFAULTS, gamma=3.0, tau_end=0.4, memory_decay=0.2)):
        out = method(k=4, **base, **extra).step(ctx_of(g, touched, counts, ids, nu, epoch=4))
        assert torch.equal(out.row_grad, ref.row_grad)
        assert torch.equal(out.row_weights, ref.row_weights) and torch.equal(out.weights, ref.weights)
    assert method(k=4).state_dict() == {}  # no memory, no state: the catalogue's stateful=False holds


# ---- 1. softmax over normalised norms --------------------------------------------------------------
@pytest.mark.parametrize("tau", [0.25, 1.0, 3.0])
def test_softmax_norms_weights_are_bounded_by_e_to_one_over_tau_and_sum_to_one(tau):
    g, touched, counts, ids, nu = random_step(1)
    g[1] *= 1e4  # a huge task: log_norms would give it nearly all the weight
    out = method(k=4, weighting="softmax_norms", tau=tau, **NO_FOCUS).step(ctx_of(g, touched, counts, ids, nu))
    w = out.row_weights.T                                           # [K, R]
    mask = touched & (g.norm(dim=2) > 0)
    torch.testing.assert_close(w.sum(0), torch.ones(w.shape[1], dtype=w.dtype))
    assert float(w[~mask].abs().max()) == 0.0
    big = w.masked_fill(~mask, 0).max(0).values
    small = w.masked_fill(~mask, math.inf).min(0).values
    assert bool((big / small <= math.exp(1 / tau) * (1 + 1e-12)).all())
    # the exact rule: softmax of the row's normalised norms over its tasks
    n = g.norm(dim=2) * mask
    logits = (n / n.sum(0)).masked_fill(~mask, -math.inf) / tau
    torch.testing.assert_close(w, torch.softmax(logits, 0))


def test_softmax_norms_tend_to_uniform_at_large_tau_and_use_batch_norms_when_not_personalised():
    norms = torch.tensor([[1.0, 3.0], [2.0, 0.5], [50.0, 0.5]])
    ctx = ctx_of(scaled_dirs(norms))
    hot = method(weighting="softmax_norms", tau=1e6, **NO_FOCUS).step(ctx).row_weights
    torch.testing.assert_close(hot, torch.full_like(hot, 1 / 3), atol=1e-6, rtol=0)
    out = method(weighting="softmax_norms", personalized=False, tau=0.5, **NO_FOCUS).step(ctx)
    batch = ctx.grads().flatten(1).norm(dim=1)
    expect = torch.softmax(batch / batch.sum() / 0.5, 0)
    torch.testing.assert_close(out.weights, expect)
    torch.testing.assert_close(out.row_weights, expect.expand(2, 3))


# ---- 2. per-sample norms -------------------------------------------------------------------------
def test_a_duplicated_visit_changes_total_weights_but_not_per_sample_weights():
    u = scaled_dirs(torch.tensor([[2.0, 1.0], [1.0, 3.0], [1.5, 1.0]]), seed=5)  # one sample's gradients
    twice = u.clone()
    twice[1, 0] *= 2.0                  # task 1 visits row 0 twice: twice the same gradient
    c_once, c_twice = torch.ones(3, 2), torch.ones(3, 2)
    c_twice[1, 0] = 2.0
    once_ctx, twice_ctx = ctx_of(u, counts=c_once), ctx_of(twice, counts=c_twice)
    for norms, changes in (("total", True), ("per_sample", False)):
        m = method(norms=norms, **NO_FOCUS)
        a, b = m.step(once_ctx), m.step(twice_ctx)
        assert (not torch.allclose(a.row_weights[0], b.row_weights[0])) == changes, norms
        torch.testing.assert_close(a.row_weights[1], b.row_weights[1])   # row 1: the same visits
    # the step length keeps the true norms (magnitude "norms": their sum over the row's tasks)
    out = method(norms="per_sample", **NO_FOCUS).step(twice_ctx).row_grad
    torch.testing.assert_close(out.norm(dim=1), twice.norm(dim=2).sum(0))


def test_per_sample_norms_without_touch_counts_is_a_clear_error():
    ctx = make_ctx(torch.randn(3, 4, 5))
    assert ctx.touch_counts is None
    with pytest.raises(TrainingError, match="norms='per_sample' needs the step's touch counts"):
        method(norms="per_sample").step(ctx)


def test_gather_batch_counts_each_tasks_references_to_each_row():
    fields = [{"user": ("user", torch.tensor([4, 4, 9])), "pos": ("item", torch.tensor([7, 7, 7])),
               "neg": ("item", torch.tensor([2, 7, 3]))},
              {"user": ("user", torch.tensor([9])), "friend": ("user", torch.tensor([4])),
               "label": (None, torch.tensor([1.0]))}]
    batch = gather_batch(fields)
    assert batch.user_ids.tolist() == [4, 9] and batch.item_ids.tolist() == [2, 3, 7]
    assert batch.counts.tolist() == [[2, 1, 1, 1, 4], [1, 1, 0, 0, 0]]
    assert torch.equal(batch.counts > 0, batch.touched)


# ---- 3. per-entity memory --------------------------------------------------------------------------
def test_ema_first_touch_equals_no_memory_and_tables_grow_to_the_largest_id():
    g, touched, counts, ids, nu = random_step(2)
    ctx = ctx_of(g, touched, counts, ids, nu, epoch=3)
    m = method(k=4, memory="ema")
    out, ref = m.step(ctx), method(k=4).step(ctx)
    # a row's first touch remembers exactly its norms: the step is the memoryless one, bit for bit
    assert torch.equal(out.row_weights, ref.row_weights) and torch.equal(out.row_grad, ref.row_grad)
    assert m.memory_users.shape == (int(ids[:nu].max()) + 1, 4)
    assert m.memory_items.shape == (int(ids[nu:].max()) + 1, 4)
    active = touched & (g.norm(dim=2) > 0)
    torch.testing.assert_close(m.memory_users[ids[:nu]], (g.norm(dim=2) * active)[:, :nu].T)
    unseen = torch.ones(len(m.memory_users), dtype=torch.bool)
    unseen[ids[:nu]] = False
    assert float(m.memory_users[unseen].abs().max()) == 0.0
    pooled = method(k=4, memory="ema", memory_pool=True)
    pooled.step(ctx)  # the first touch sets each table's mean norm per task
    n = g.norm(dim=2) * active
    means = torch.stack([n[:, :nu].sum(1) / active[:, :nu].sum(1), n[:, nu:].sum(1) / active[:, nu:].sum(1)])
    torch.testing.assert_close(pooled.memory_pooled, means.nan_to_num(0.0))


def test_ema_decays_on_a_hand_example_and_keeps_the_memory_of_untouched_rows():
    beta = 0.5
    m = method(k=2, memory="ema", memory_decay=beta, **NO_FOCUS)
    # step 1: users 0 and 1 (norms (1, 3) and (2, 2)); step 2: user 0 alone, norms (1, 1)
    s1 = ctx_of(scaled_dirs(torch.tensor([[1.0, 2.0], [3.0, 2.0]])), row_ids=torch.tensor([0, 1]))
    m.step(s1)
    kept = m.memory_users[1].clone()
    w = m.step(ctx_of(scaled_dirs(torch.tensor([[1.0], [1.0]])), row_ids=torch.tensor([0]), step=1)).row_weights
    torch.testing.assert_close(m.memory_users[0], torch.tensor([1.0, beta * 3 + (1 - beta) * 1], dtype=w.dtype))
    torch.testing.assert_close(w[0], torch.tensor([1 / 3, 2 / 3], dtype=w.dtype))  # from m = (1, 2), tau 1
    assert torch.equal(m.memory_users[1], kept)                   # not in step 2: unchanged
    # a task that does not take part on a row leaves its entry alone
    touched = torch.tensor([[True], [False]])
    m.step(ctx_of(scaled_dirs(torch.tensor([[4.0], [9.0]])), touched, row_ids=torch.tensor([0]), step=2))
    torch.testing.assert_close(m.memory_users[0], torch.tensor([2.5, 2.0], dtype=w.dtype))


def test_pooled_memory_differs_from_per_row_when_rows_differ_and_coincides_when_they_are_identical():
    ids = torch.tensor([0, 1, 2])
    differ = scaled_dirs(torch.tensor([[1.0, 1.0, 1.0], [4.0, 1.0, 0.25]]), seed=1)
    same = scaled_dirs(torch.tensor([[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]]), seed=1)
    for grads, equal in ((differ, False), (same, True)):
        per_row, pooled = (method(k=2, memory="ema", memory_pool=p, **NO_FOCUS) for p in (False, True))
        for step in range(3):  # the same rows, scaled differently each step
            ctx = ctx_of(grads * (1.0 + step), row_ids=ids, step=step)
            a, b = per_row.step(ctx).row_weights, pooled.step(ctx).row_weights
        assert torch.allclose(a, b) == equal
        if not equal:  # pooled: one weight vector for the whole table
            torch.testing.assert_close(b, b[:1].expand_as(b))


@pytest.mark.parametrize("mode", ["ema", "ema_pool", "softmax_per_sample_ema", "cosine_ema_pool"])
def test_memory_resumes_from_a_state_dict_exactly(mode):
    steps = [random_step(10 + s, n_ids=6 + 4 * s) for s in range(4)]  # the tables grow as ids appear

    def run(m, which):
        return [m.step(ctx_of(g, t, c, i, nu, epoch=s, step=s)) for s, (g, t, c, i, nu) in enumerate(steps)
                if s in which]

    full = method(k=4, **MODES[mode])
    outs = run(full, {0, 1, 2, 3})
    part = method(k=4, **MODES[mode])
    run(part, {0, 1})
    saved = copy.deepcopy(part.state_dict())
    assert saved and all(v.numel() > 0 for v in saved.values())
    resumed = method(k=4, **MODES[mode])            # fresh: empty tables of another size
    resumed.load_state_dict(saved)
    for a, b in zip(outs[2:], run(resumed, {2, 3})):
        assert torch.equal(a.row_grad, b.row_grad) and torch.equal(a.row_weights, b.row_weights)
    assert {k: v.shape for k, v in resumed.state_dict().items()} == {k: v.shape for k, v in full.state_dict().items()}


def test_memory_without_row_ids_is_a_clear_error():
    ctx = ctx_of(torch.randn(3, 4, 5))
    ctx.source.row_ids = None
    with pytest.raises(TrainingError, match="memory='ema' needs the step's row ids"):
        method(memory="ema").step(ctx)


# ---- 4. cosine-gated focus -----------------------------------------------------------------------
def test_cosine_weighting_favours_the_aligned_task_over_the_anti_aligned_one_of_equal_norm():
    e = torch.eye(3, dtype=torch.float64)
    g = torch.stack([e[0], 2 * e[0], -2 * e[0], 2 * e[1]])[:, None, :]  # main, aligned, anti, orthogonal
    out = method(k=4, weighting="cosine", tau=1.0).step(ctx_of(g)).row_weights[0]
    assert out[1] > out[3] > out[2]
    logits = torch.tensor([1.0, 1.0, -1.0, 0.0], dtype=torch.float64) + torch.log(torch.tensor([1.0, 2, 2, 2]))
    torch.testing.assert_close(out, torch.softmax(logits.double(), 0))
    # the same with personalized off: the batch cosines and norms
    shared = method(k=4, weighting="cosine", personalized=False).step(ctx_of(g)).weights
    torch.testing.assert_close(shared, torch.softmax(logits.to(shared.dtype), 0))


def test_cosine_temperature_anneals_geometrically_and_replaces_alignment_and_progressive_focus():
    m = method(weighting="cosine", tau=2.0, tau_end=0.05, focus_warmup=10)
    assert m.temperature(0) == 2.0 and m.temperature(10) == 0.05 and m.temperature(30) == 0.05
    assert m.temperature(5) == pytest.approx(math.sqrt(2.0 * 0.05))
    assert not m.align and not m.progressive and m.focus_strength(20) == 0.0
    assert method(weighting="cosine", tau=2.0, focus=False).temperature(20) == 2.0
    assert method(weighting="cosine", tau=2.0, progressive=False).temperature(20) == 2.0
    assert method(tau=2.0, tau_end=0.05).temperature(20) == 2.0   # only cosine anneals


def test_cosine_focus_concentrates_on_the_main_task_late_and_uses_norms_alone_off_its_rows():
    norms = torch.tensor([[1.0, 0.0], [3.0, 1.0], [4.0, 2.0]])
    touched = norms > 0
    g = scaled_dirs(norms, seed=2)
    m = method(weighting="cosine", tau=1.0, tau_end=0.01, gamma=0.5, focus_warmup=10)
    early, late = (m.step(ctx_of(g, touched, epoch=e)).row_weights for e in (0, 10))
    assert late[0, 0] > 0.99 and late[0, 0] > early[0, 0]
    # row 1 (no main task): cos = 0 for every task, logits gamma log n / tau_t
    for w, tau in ((early, 1.0), (late, 0.01)):
        expect = torch.softmax(0.5 * torch.log(norms[1:, 1].double()) / tau, 0)
        torch.testing.assert_close(w[1, 1:], expect)
        assert float(w[1, 0]) == 0.0


# ---- every mode: what the method promises --------------------------------------------------------
@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("base", [{}, {"personalized": False}, {"balance": False}, {"focus": False},
                                  {"personalized": False, "balance": False, "focus": False},
                                  {"norm_by_batch_mean": True, "weight_sign": -1}])
def test_every_mode_composes_main_only_rows_get_their_main_gradient_and_weights_sum_to_one(mode, base):
    m = method(k=4, **base, **MODES[mode])
    for s in range(2):  # twice: the second step reads the memory
        g, touched, counts, ids, nu = random_step(20 + s)
        out = m.step(ctx_of(g, touched, counts, ids, nu, epoch=6, step=s))
        assert torch.equal(out.row_grad[:2], g[0, :2])                  # rows 0-1: main task alone
        assert torch.equal(out.row_weights[:2], torch.tensor([[1.0, 0, 0, 0]] * 2, dtype=out.row_weights.dtype))
        assert float(out.row_weights[~touched.T].abs().max()) == 0.0
        torch.testing.assert_close(out.row_weights.sum(1), torch.ones(len(ids), dtype=out.row_weights.dtype))
        assert bool(torch.isfinite(out.row_grad).all())


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("personalized", [True, False])
@pytest.mark.parametrize("perm", [[0, 2, 3, 1], [0, 3, 1, 2]])
def test_permuting_the_auxiliary_tasks_permutes_the_weights_in_every_mode(mode, personalized, perm):
    """PMTRec's symmetry is "aux" (the catalogue's claim, tests/test_methods_baselines.py): it holds in every mode."""
    a, b = (method(k=4, personalized=personalized, **MODES[mode]) for _ in range(2))
    for s in range(2):
        g, touched, counts, ids, nu = random_step(30 + s)
        out = a.step(ctx_of(g, touched, counts, ids, nu, epoch=4, step=s))
        out_p = b.step(ctx_of(g[perm], touched[perm], counts[perm], ids, nu, epoch=4, step=s))
        torch.testing.assert_close(out_p.row_grad, out.row_grad)
        torch.testing.assert_close(out_p.row_weights, out.row_weights[:, perm])
        torch.testing.assert_close(out_p.weights, out.weights[perm])


@pytest.mark.parametrize("mode", sorted(MODES))
def test_shuffle_rows_keeps_the_batch_weights_in_every_mode(mode):
    g, touched, counts, ids, nu = random_step(40)
    ctx = ctx_of(g, touched, counts, ids, nu, step=3)
    own = method(k=4, **MODES[mode], **NO_FOCUS).step(ctx)
    shuffled = method(k=4, shuffle_rows=True, **MODES[mode], **NO_FOCUS).step(
        ctx_of(g, touched, counts, ids, nu, step=3))
    torch.testing.assert_close(shuffled.weights, own.weights)  # the same multiset of weight vectors


@pytest.mark.parametrize("mode", sorted(MODES))
def test_no_python_loop_over_rows_in_any_mode(mode):
    counts = []
    for R in (5, 2000):
        torch.manual_seed(0)
        touched = torch.rand(4, R) < 0.5
        touched[:, :4] = torch.eye(4, dtype=torch.bool)
        ctx = ctx_of(torch.randn(4, R, 8), touched, counts=touched.float() * 2, row_ids=torch.randperm(3 * R)[:R],
                     n_user_rows=R // 2, epoch=3)
        m = method(k=4, **MODES[mode])
        with _CountTorchCalls() as calls:
            m.step(ctx)
        counts.append(calls.calls)
    assert counts[0] == counts[1] and counts[0] < 300


@pytest.mark.parametrize("bad", [{"weighting": "cosines"}, {"gamma": -1}, {"tau_end": 0}, {"norms": "mean"},
                                 {"memory": "lstm"}, {"memory_decay": 1.0}, {"memory_pool": "yes"}])
def test_bad_new_parameters_are_config_errors_naming_them(bad):
    key = next(iter(bad))
    with pytest.raises(ConfigError, match=f"{key} must be"):
        build_method("pmtrec", TASKS, bad)


# ---- integration: the trainer's steps and checkpoints --------------------------------------------
def test_memory_trains_and_resumes_from_a_trainer_checkpoint_exactly(tiny_data, tmp_path):
    from conftest import tiny_config
    from pmtrec.train import Trainer, train

    quiet = lambda *_: None  # noqa: E731
    cfg = tiny_config("train.method=pmtrec", "train.method_params={memory: ema, weighting: softmax_norms}",
                      epochs=3, batch_size=512)
    full = train(cfg, tiny_data, log=quiet)
    assert math.isfinite(full["test"]["overall"]["ndcg@20"])
    part = Trainer(cfg, tiny_data)
    part.epochs = 2  # stop after two epochs, as if killed
    part.fit(checkpoint=tmp_path / "run.ckpt", log=quiet)
    assert part.method.memory_users.shape[0] > 1 and part.method.memory_items.shape[0] > 1
    resumed = Trainer(cfg, tiny_data).fit(checkpoint=tmp_path / "run.ckpt", log=quiet)
    assert resumed["test"] == full["test"]
    assert [c["weight"] for c in resumed["curves"]] == [c["weight"] for c in full["curves"]]


def test_per_sample_norms_in_a_real_step_read_the_batch_counts(tiny_data):
    from conftest import tiny_config
    from pmtrec.methods import StepContext
    from pmtrec.train import Trainer, task_losses

    tr = Trainer(tiny_config("train.method=pmtrec", batch_size=256), tiny_data)
    batch = gather_batch(tr._sample(next(tr.tasks[0].epoch_batches(256, tr.gen))))
    assert float(batch.counts.max()) > 1  # some rows are referenced more than once

    def step(norms):
        rows = torch.cat([tr.model.user.detach()[batch.user_ids], tr.model.item.detach()[batch.item_ids]])
        rows.requires_grad_()
        ctx = StepContext.for_rows(task_losses(tr.tasks, batch, rows), tr.task_names, rows, len(batch.user_ids),
                                   torch.cat([batch.user_ids, batch.item_ids]), batch.touched,
                                   [list(t.parameters()) for t in tr.tasks], 0, 1, 0, touch_counts=lambda: batch.counts)
        assert torch.equal(ctx.row_ids, torch.cat([batch.user_ids, batch.item_ids]))
        return build_method("pmtrec", tr.task_names, {"norms": norms}).step(ctx)

    total, per_sample = step("total"), step("per_sample")
    assert not torch.allclose(total.row_weights, per_sample.row_weights)
    torch.testing.assert_close(per_sample.row_weights.sum(1), torch.ones(len(batch.touched[0])))
    # the step lengths are the true norms' (magnitude "norms"), so they do not change
    torch.testing.assert_close(per_sample.row_grad.norm(dim=1), total.row_grad.norm(dim=1), rtol=1e-4, atol=1e-7)



@pytest.mark.parametrize("spec, counted", [("ew", False), ("pmtrec", False), ("pmtrec-persample", True)])
def test_touch_counts_are_counted_only_when_a_method_asks(tiny_data, spec, counted):
    """Counting costs a few % of an EW step, so the trainer counts lazily: only per-sample norms
    count, and what they read equals an eager count of the batch's field references."""
    from conftest import tiny_config
    from pmtrec.train import Trainer

    over = ["train.method=pmtrec", "train.method_params.norms=per_sample"] if spec == "pmtrec-persample" \
        else ["train.method=" + spec]
    tr = Trainer(tiny_config(*over, batch_size=256), tiny_data)
    batch = gather_batch(tr._sample(next(tr.tasks[0].epoch_batches(256, tr.gen))))
    ctx, _ = tr.step_context(batch)
    tr.method.step(ctx)
    assert (batch._counts is not None) == counted
    eager = torch.zeros(batch.touched.shape)
    for k, (index, through) in enumerate(zip(batch.task_index, batch.passthrough)):
        for name, local in index.items():
            if name not in through:
                eager[k] += torch.bincount(local, minlength=eager.shape[1]).float()
    assert torch.equal(ctx.touch_counts, eager)
