"""Trainer: row gathering, per-task row gradients, determinism, resume, and the planted signal."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import tiny_config
from pmtrec.methods import StepContext
from pmtrec.model import MF
from pmtrec.tasks import bpr_loss
from pmtrec.train import Trainer, gather_batch, scatter_leaf_grads, task_losses, train


def tiny_cfg(*overrides: str) -> dict:
    return tiny_config(*overrides)


def test_gather_batch_maps_every_field_back_to_its_global_ids():
    g = torch.Generator().manual_seed(0)
    fields = [
        {"anchor": ("user", torch.randint(10, (7,), generator=g)), "pos": ("item", torch.randint(20, (7,), generator=g)),
         "neg": ("item", torch.randint(20, (7,), generator=g))},
        {"anchor": ("user", torch.randint(10, (5,), generator=g)), "pos": ("user", torch.randint(10, (5,), generator=g)),
         "neg": ("user", torch.randint(10, (5,), generator=g))},
        {"item": ("item", torch.randint(20, (4,), generator=g)), "label": (None, torch.tensor([0, 1, 2, 1]))},
    ]
    b = gather_batch(fields)
    row_ids = torch.cat([b.user_ids, b.item_ids])
    n_u = len(b.user_ids)
    assert torch.equal(b.user_ids, torch.unique(b.user_ids)) and torch.equal(b.item_ids, torch.unique(b.item_ids))
    for k, task_fields in enumerate(fields):
        for name, (table, ids) in task_fields.items():
            idx = b.task_index[k][name]
            if table is None:
                assert torch.equal(idx, ids) and name in b.passthrough[k]
                continue
            assert torch.equal(row_ids[idx], ids)
            assert bool(((idx < n_u) == (table == "user")).all())
            assert bool(b.touched[k, idx].all())
        assert int(b.touched[k].sum()) == len(torch.unique(torch.cat(
            [b.task_index[k][f] for f, (t, _) in task_fields.items() if t is not None])))


def test_row_gradients_equal_full_table_gradients():
    """Per-task gradients on the gathered rows are exactly the dense table gradients on those rows."""
    torch.manual_seed(0)
    model = MF(12, 30, 8)
    g = torch.Generator().manual_seed(1)
    fields = [
        {"anchor": ("user", torch.randint(12, (9,), generator=g)), "pos": ("item", torch.randint(30, (9,), generator=g)),
         "neg": ("item", torch.randint(30, (9,), generator=g))},
        {"anchor": ("item", torch.randint(30, (6,), generator=g)), "pos": ("item", torch.randint(30, (6,), generator=g)),
         "neg": ("item", torch.randint(30, (6,), generator=g))},
    ]

    class Bpr(torch.nn.Module):
        def loss(self, rows):
            return bpr_loss(rows["anchor"], rows["pos"], rows["neg"])

    tasks = [Bpr(), Bpr()]
    b = gather_batch(fields)
    rows = torch.cat([model.user.detach()[b.user_ids], model.item.detach()[b.item_ids]]).requires_grad_()
    losses = task_losses(tasks, b, rows)
    ctx = StepContext.for_rows(losses, ("rec", "coview"), rows, len(b.user_ids), torch.cat([b.user_ids, b.item_ids]),
                      b.touched, [[], []], 0, 1, 0)
    G = ctx.grads()
    for k, task_fields in enumerate(fields):
        feed = {name: model.table(table)[ids] for name, (table, ids) in task_fields.items()}
        gu, gi = torch.autograd.grad(tasks[k].loss(feed), [model.user, model.item], allow_unused=True)
        gu = torch.zeros_like(model.user) if gu is None else gu
        gi = torch.zeros_like(model.item) if gi is None else gi
        expected = torch.cat([gu[b.user_ids], gi[b.item_ids]])
        torch.testing.assert_close(G[k], expected)
        # rows the task does not touch have exactly zero gradient
        assert float(G[k][~b.touched[k]].abs().sum()) == 0.0


def test_trainer_fast_path_matches_one_autograd_pass_per_task(tiny_data):
    """One backward of the summed leaf losses gives each task's row and parameter gradients, and a
    loss-weighting method's scattered leaf gradients equal autograd's gradient w.r.t. the rows."""
    tr = Trainer(tiny_cfg("train.method=pmtrec", "dataset.synthetic.size=tiny"), tiny_data)
    assert "category" in tr.task_names  # a task with parameters of its own
    rec_fields = next(tr.tasks[0].epoch_batches(64, tr.gen))
    batch = gather_batch(tr._sample(rec_fields))
    ctx, leaves = tr.step_context(batch)
    G, P = ctx.grads(), ctx.param_grads()
    rows = ctx.source.rows.clone().requires_grad_()
    slow = StepContext.for_rows(task_losses(tr.tasks, batch, rows), tr.task_names, rows, ctx.n_user_rows, ctx.source.row_ids,
                       ctx.touched, ctx.source.task_params, 0, 1, 0)
    torch.testing.assert_close(G, slow.grads(), rtol=1e-5, atol=1e-9)
    assert float(G[~ctx.touched].abs().sum()) == 0.0
    for mine, ref in zip(P, slow.param_grads()):
        for a, b in zip(mine, ref):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-9)
    assert any(float(g.abs().sum()) > 0 for g in P[tr.task_names.index("category")])
    # loss-weighting path: backward of a weighted sum, scattered, equals d(weighted sum)/d rows
    ctx2, leaves2 = tr.step_context(batch)
    w = torch.tensor([1.0, 0.5, 2.0, 0.25][:len(tr.task_names)])
    (w * ctx2.losses).sum().backward()
    got = scatter_leaf_grads(leaves2, [leaf.grad for mine in leaves2 for _, leaf in mine],
                             torch.zeros_like(ctx2.source.rows), False)
    rows3 = ctx.source.rows.clone().requires_grad_()
    (w * task_losses(tr.tasks, batch, rows3)).sum().backward()
    torch.testing.assert_close(got, rows3.grad, rtol=1e-5, atol=1e-9)


def test_same_seed_gives_identical_metrics(tiny_data):
    a = train(tiny_cfg("train.method=ew"), tiny_data, log=lambda *_: None)
    b = train(tiny_cfg("train.method=ew"), tiny_data, log=lambda *_: None)
    assert a["test"] == b["test"] and a["valid"] == b["valid"]
    c = train(tiny_cfg("train.method=ew", "train.seed=1"), tiny_data, log=lambda *_: None)
    assert c["test"]["overall"] != a["test"]["overall"]


def test_mf_beats_mostpop_on_tiny(tiny_data):
    pop = train(tiny_cfg("train.method=mostpop"), tiny_data)
    mf = train(tiny_cfg("train.method=single", "train.epochs=30", "train.lr=0.01"), tiny_data, log=lambda *_: None)
    assert mf["test"]["overall"]["ndcg@20"] > 1.2 * pop["test"]["overall"]["ndcg@20"]


def test_lazy_adam_updates_only_the_rows_of_the_batch(tiny_data):
    cfg = tiny_cfg("train.optimizer=lazy_adam", "tasks.social=false", "tasks.category=false", "tasks.coview=false")
    tr = Trainer(cfg, tiny_data)
    before_u, before_i = tr.model.user.detach().clone(), tr.model.item.detach().clone()
    fields = next(tr.tasks[0].epoch_batches(8, tr.gen))

    tr.train_step(fields, tr.new_log(), 0)
    changed_u = torch.nonzero((tr.model.user.detach() != before_u).any(dim=1)).flatten()
    changed_i = torch.nonzero((tr.model.item.detach() != before_i).any(dim=1)).flatten()
    assert set(changed_u.tolist()) == set(fields["anchor"][1].tolist())
    assert set(changed_i.tolist()) == set(torch.cat([fields["pos"][1], fields["neg"][1]]).tolist())


def test_resume_from_checkpoint_matches_uninterrupted_run(tiny_data, tmp_path):
    cfg = tiny_cfg("train.method=ew", "train.epochs=4")
    full = train(cfg, tiny_data, log=lambda *_: None)
    ckpt = tmp_path / "run.ckpt"
    part = Trainer(tiny_cfg("train.method=ew", "train.epochs=4"), tiny_data)
    part.epochs = 2  # stop after two epochs, as if killed
    part.fit(checkpoint=ckpt, log=lambda *_: None)
    resumed = Trainer(cfg, tiny_data).fit(checkpoint=ckpt, log=lambda *_: None)
    assert resumed["test"] == full["test"]
    assert resumed["best_epoch"] == full["best_epoch"]


def test_result_record_has_provenance_and_groups(tiny_data):
    r = train(tiny_cfg("train.method=ew", "train.epochs=1"), tiny_data, log=lambda *_: None)
    for key in ("config_hash", "git_commit", "version", "device", "memory", "epoch_time_s", "curves", "best_epoch"):
        assert key in r
    assert set(r["tasks"]) >= {"rec", "social"}
    assert len(r["test"]["groups"]) == 5
    assert r["curves"][0]["weight"]["rec"] == 1.0
    assert np.isfinite(r["curves"][0]["loss"]["rec"])


def test_epoch_log_averages_row_weights_per_activity_group_over_rows_shared_with_rec():
    from types import SimpleNamespace as NS

    from pmtrec.train import EpochLog

    log = EpochLog(2, np.array([0, 1, 1]), np.array([0, 0]), torch.device("cpu"))

    def add(user_ids, item_ids, touched, row_weights):
        ctx = NS(losses=torch.ones(2), grads_computed=False, touched=torch.tensor(touched), n_user_rows=len(user_ids))
        out = NS(weights=torch.tensor([0.5, 0.5]), row_weights=torch.tensor(row_weights))
        log.add(ctx, out, NS(user_ids=torch.tensor(user_ids), item_ids=torch.tensor(item_ids, dtype=torch.long)))

    # rows: user 0, user 2, item 1; the auxiliary task touches only the two users
    add([0, 2], [1], [[True, True, True], [True, True, False]], [[0.6, 0.4], [0.8, 0.2], [1.0, 0.0]])
    add([2], [], [[True], [True]], [[0.5, 0.5]])
    s = log.summary(("rec", "social"))
    assert s["row_weight_by_user_group"]["0"] == pytest.approx({"rec": 0.6, "social": 0.4})
    assert s["row_weight_by_user_group"]["1"] == pytest.approx({"rec": 0.65, "social": 0.35})
    # the item row is touched by rec alone, so nothing is counted for its group
    assert s["row_weight_by_item_group"] == {"0": {"rec": 0.0, "social": 0.0}}
    assert log.steps == 2 and s["weight"] == pytest.approx({"rec": 0.5, "social": 0.5})


def test_final_validation_reuses_the_best_epochs_and_equals_a_fresh_one(monkeypatch):
    from pmtrec.config import load_config
    from pmtrec.data import prepare_in_memory
    from pmtrec.train import Trainer

    cfg = load_config(overrides=["train.method=ew", "train.epochs=4", "train.progress=false", "train.device=cpu"])
    data = prepare_in_memory(cfg)
    calls = []
    trainer = Trainer(cfg, data)
    real = trainer.evaluate
    monkeypatch.setattr(trainer, "evaluate", lambda split: calls.append(split) or real(split))
    res = trainer.fit()
    assert calls.count("valid") == 4 and calls.count("test") == 1   # one validation per epoch, none again
    # the same weights evaluated afresh give exactly the reported validation
    assert real("valid").metrics == pytest.approx(res["valid"]["overall"], rel=0, abs=0)
