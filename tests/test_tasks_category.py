"""The category task with one and with several categories per item."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from pmtrec.tasks import CategoryTask

MULTI = np.array([[0, 1], [0, 3], [1, 2], [2, 0], [2, 1], [2, 4], [4, 3]])  # item 3 has none


def task(pairs: np.ndarray, n_cat: int = 5, dim: int = 4) -> CategoryTask:
    return CategoryTask(pairs, n_cat, dim, 0.5, torch.Generator().manual_seed(0))


def test_single_label_is_cross_entropy_on_the_rows():
    pairs = np.array([[0, 1], [1, 0], [2, 2], [4, 1]])
    t = task(pairs)
    assert not t.multi_label
    fields = t.sample(64, torch.Generator().manual_seed(1))
    assert set(fields) == {"item", "label"}
    ids, labels = fields["item"][1], fields["label"][1]
    assert labels.tolist() == [dict(pairs.tolist())[int(i)] for i in ids]
    rows = torch.randn(64, 4)
    assert torch.equal(t.loss({"item": rows, "label": labels}), F.cross_entropy(rows @ t.category.T, labels))


def test_multi_label_loss_is_the_mean_log_likelihood_of_each_items_categories():
    t = task(MULTI)
    assert t.multi_label
    g = torch.Generator().manual_seed(2)
    fields = t.sample(50, g)
    ids = fields["item"][1]
    rows = torch.randn(50, 4, generator=g)
    got = t.loss({name: (rows if name == "item" else value) for name, (_, value) in fields.items()})
    logp = torch.log_softmax(rows @ t.category.T, dim=-1)
    labels = {}
    for i, c in MULTI.tolist():
        labels.setdefault(i, []).append(c)
    want = torch.stack([-logp[b, labels[int(i)]].mean() for b, i in enumerate(ids)]).mean()
    torch.testing.assert_close(got, want)


def test_multi_label_samples_items_uniformly_once_each_however_many_labels():
    t = task(MULTI)
    ids = t.sample(40_000, torch.Generator().manual_seed(3))["item"][1]
    share = torch.bincount(ids, minlength=5).double() / len(ids)
    assert share[3] == 0  # no category: never sampled
    torch.testing.assert_close(share[[0, 1, 2, 4]], torch.full((4,), 0.25, dtype=torch.double), atol=0.01, rtol=0)


def test_multi_label_gradient_pulls_the_item_towards_each_of_its_categories():
    t = task(MULTI)
    rows = torch.zeros(1, 4, requires_grad=True)
    labels = t.labels[2:3]  # item 2: categories 0, 1, 4
    weight = t.weights[2:3]
    assert labels.tolist() == [[0, 1, 4]] and torch.allclose(weight, torch.full((1, 3), 1 / 3))
    t.loss({"item": rows, "label": labels, "weight": weight}).backward()
    # at zero the softmax is uniform: grad = mean(C) - mean(C[labels])
    want = t.category.mean(0) - t.category[[0, 1, 4]].mean(0)
    torch.testing.assert_close(rows.grad[0], want.detach())


def test_trainer_row_gradients_with_a_multi_label_category_task():
    """The trainer's one-backward row gradients hold for the multi-label task, and a run trains."""
    import dataclasses

    from pmtrec.config import load_config
    from pmtrec.data import prepare_in_memory
    from pmtrec.methods import StepContext
    from pmtrec.train import Trainer, gather_batch, task_losses, train

    cfg = load_config(overrides=["dataset.synthetic.size=tiny", "train.progress=false", "train.threads=1",
                                 "train.epochs=2", "train.batch_size=256", "train.method=pmtrec"])
    data = prepare_in_memory(cfg)
    ic = data.item_category
    extra = np.stack([ic[::2, 0], (ic[::2, 1] + 1) % data.n_categories], axis=1)  # a 2nd category, half the items
    both = np.unique(np.concatenate([ic, extra]), axis=0)
    data = dataclasses.replace(data, item_category=both)
    tr = Trainer(cfg, data)
    cat = tr.tasks[tr.task_names.index("category")]
    assert cat.multi_label and cat.labels.shape == (len(np.unique(both[:, 0])), 2)
    batch = gather_batch(tr._sample(next(tr.tasks[0].epoch_batches(64, tr.gen))))
    ctx, _ = tr.step_context(batch)
    rows = ctx.source.rows.clone().requires_grad_()
    slow = StepContext.for_rows(task_losses(tr.tasks, batch, rows), tr.task_names, rows, ctx.n_user_rows, ctx.source.row_ids,
                       ctx.touched, ctx.source.task_params, 0, 1, 0)
    torch.testing.assert_close(ctx.grads(), slow.grads(), rtol=1e-5, atol=1e-9)
    result = train(cfg, data, log=lambda *_: None)
    assert np.isfinite(result["test"]["overall"]["ndcg@20"]) and result["test"]["overall"]["ndcg@20"] > 0

