"""Anchored auxiliary batches (``train.aux_sampling: anchored``): each task samples for the rec batch's rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import tiny_config
from pmtrec.config import load_config
from pmtrec.errors import ConfigError
from pmtrec.tasks import CategoryTask, CoviewTask, RecTask, SocialTask
from pmtrec.training.anchored import anchored_fields
from pmtrec.training.rows import gather_batch, gather_rows, leaf_losses


def undirected(pairs):
    return np.array([*pairs, *[(b, a) for a, b in pairs]], dtype=np.int64)


N_USERS, N_ITEMS = 8, 10
# user 0: friends 1, 2, 3; user 1: 0, 2; users 4, 5, 6, 7: none
SOCIAL = undirected([(0, 1), (0, 2), (0, 3), (1, 2)])
# item 0: 1, 2; item 1: 0; item 2: 0, 3; items 4.. : none
COVIEW = undirected([(0, 1), (0, 2), (2, 3)])
SINGLE = np.array([[0, 1], [2, 0], [3, 2], [5, 1]])  # items 1, 4, 6.. have no category
MULTI = np.array([[0, 1], [0, 3], [2, 0], [2, 1], [2, 4], [5, 3]])


def neighbours(edges):
    out: dict[int, set[int]] = {}
    for a, b in edges.tolist():
        out.setdefault(a, set()).add(b)
    return out


def rec_batch(users, pos, neg) -> dict:
    t = lambda v: torch.tensor(v, dtype=torch.long)  # noqa: E731
    return {"anchor": ("user", t(users)), "pos": ("item", t(pos)), "neg": ("item", t(neg))}


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def category(pairs, n_cat: int = 5) -> CategoryTask:
    return CategoryTask(pairs, n_cat, 4, 0.5, gen(9))


@pytest.mark.parametrize("cls,edges,n", [(SocialTask, SOCIAL, N_USERS), (CoviewTask, COVIEW, N_ITEMS)])
def test_edge_task_gives_each_anchor_with_edges_once_a_true_positive_and_a_true_negative(cls, edges, n):
    task = cls(edges, n)
    nbrs = neighbours(edges)
    anchors = torch.tensor([0, 0, 4, 1, 7, 2, 0, 5, 1])
    for seed in range(20):
        f = task.sample_for(anchors, gen(seed))
        a, p, q = (f[k][1].tolist() for k in ("anchor", "pos", "neg"))
        assert sorted(a) == sorted({x for x in anchors.tolist() if x in nbrs})  # each once, only with edges
        assert all(pp in nbrs[aa] for aa, pp in zip(a, p))
        assert all(qq not in nbrs[aa] and 0 <= qq < n for aa, qq in zip(a, q))  # NegativeSampler is exact


def test_positive_is_uniform_over_the_anchors_edges():
    task = SocialTask(SOCIAL, N_USERS)
    g = gen(1)
    pos = torch.cat([task.sample_for(torch.tensor([0]), g)["pos"][1] for _ in range(6000)])
    share = torch.bincount(pos, minlength=N_USERS).double() / len(pos)
    torch.testing.assert_close(share[[1, 2, 3]], torch.full((3,), 1 / 3, dtype=torch.double), atol=0.02, rtol=0)
    assert share[[0, 4, 5, 6, 7]].sum() == 0


def test_layout_equals_sample_layout():
    for task in (SocialTask(SOCIAL, N_USERS), CoviewTask(COVIEW, N_ITEMS), category(SINGLE), category(MULTI)):
        want = task.sample(4, gen())
        got = task.sample_for(torch.tensor([0, 1, 2, 3]), gen())
        assert {k: (t, v.dtype, v.shape[1:]) for k, (t, v) in got.items()} == \
            {k: (t, v.dtype, v.shape[1:]) for k, (t, v) in want.items()}


def test_same_generator_state_gives_the_same_batch_and_another_seed_another():
    task = SocialTask(SOCIAL, N_USERS)
    anchors = torch.tensor([0, 1, 3, 6])
    a, b = task.sample_for(anchors, gen(5)), task.sample_for(anchors, gen(5))
    assert all(torch.equal(a[k][1], b[k][1]) for k in a)
    draws = {tuple(task.sample_for(anchors, gen(s))["pos"][1].tolist()) for s in range(10)}
    assert len(draws) > 1


def test_anchors_without_edges_give_an_empty_batch_with_loss_zero_and_zero_gradient():
    social, cat = SocialTask(SOCIAL, N_USERS), category(SINGLE)
    s = social.sample_for(torch.tensor([4, 5, 5, 7]), gen())
    c = cat.sample_for(torch.tensor([1, 4, 9, 7]), gen())  # 9, 7: beyond every categorised item
    assert all(len(v) == 0 for _, v in s.values()) and all(len(v) == 0 for _, v in c.values())
    assert set(s) == {"anchor", "pos", "neg"} and set(c) == {"item", "label"}
    rec = RecTask(np.array([[4, 1], [5, 4]]), N_ITEMS)
    fields = [rec.edges_for(torch.tensor([0, 1]), gen()), s, c]
    batch = gather_batch(fields)
    rows = gather_rows(torch.randn(N_USERS, 4), torch.randn(N_ITEMS, 4), batch)
    losses, leaves = leaf_losses([rec, social, cat], batch, rows)
    assert torch.isfinite(losses).all() and losses[0] > 0 and losses[1:].tolist() == [0.0, 0.0]
    losses.sum().backward()
    assert all(leaf.grad.abs().sum() == 0 for mine in leaves[1:] for _, leaf in mine)
    assert torch.equal(cat.category.grad, torch.zeros_like(cat.category))
    assert not batch.touched[1:].any()


def test_category_batch_is_each_rec_item_with_a_category_once_with_its_label():
    cat = category(SINGLE)
    f = cat.sample_for(torch.tensor([3, 1, 0, 3, 4, 0, 8]), gen())
    assert f["item"][0] == "item" and f["label"][0] is None
    got = dict(zip(f["item"][1].tolist(), f["label"][1].tolist()))
    assert len(got) == len(f["item"][1]) and got == {0: 1, 3: 2}


def test_multi_label_items_keep_their_soft_target():
    cat = category(MULTI)
    f = cat.sample_for(torch.tensor([2, 1, 0, 2, 5]), gen())
    assert sorted(f["item"][1].tolist()) == [0, 2, 5]
    for i, labels, weight in zip(f["item"][1].tolist(), f["label"][1], f["weight"][1]):
        want = sorted(c for j, c in MULTI.tolist() if j == i)
        assert sorted(labels[weight > 0].tolist()) == want
        torch.testing.assert_close(weight[weight > 0], torch.full((len(want),), 1 / len(want)))
        assert weight.sum().item() == pytest.approx(1.0)


def test_anchored_fields_anchor_social_on_rec_users_and_item_tasks_on_positives_and_negatives():
    social, coview, cat = SocialTask(SOCIAL, N_USERS), CoviewTask(COVIEW, N_ITEMS), category(SINGLE)
    rec = rec_batch(users=[1, 4, 1, 6], pos=[5, 2, 7, 9], neg=[3, 8, 0, 6])
    fs, fc, fk = anchored_fields([social, coview, cat], rec, gen(3))
    assert fs["anchor"][1].tolist() == [1]                        # users 4, 6 have no friends
    assert sorted(fc["anchor"][1].tolist()) == [0, 2, 3]          # 2: a positive; 0, 3: negatives
    assert sorted(fk["item"][1].tolist()) == [0, 2, 3, 5]         # positives and negatives with a category


def test_anchored_fields_draw_what_each_task_draws_alone():
    social, coview = SocialTask(SOCIAL, N_USERS), CoviewTask(COVIEW, N_ITEMS)
    rec = rec_batch(users=[0, 1], pos=[0, 2], neg=[1, 5])
    got = anchored_fields([social, coview], rec, gen(4))
    g = gen(4)
    want = [social.sample_for(torch.tensor([0, 1]), g), coview.sample_for(torch.tensor([0, 2, 1, 5]), g)]
    assert all(torch.equal(a[k][1], b[k][1]) for a, b in zip(got, want) for k in a)


def test_anchored_fields_reject_a_task_without_anchor_table():
    rec = RecTask(SOCIAL, N_ITEMS)
    with pytest.raises(ConfigError, match="train.aux_sampling.*'rec'"):
        anchored_fields([rec], rec_batch([0], [1], [2]), gen())


def test_index_buffers_follow_the_module_to_its_device():
    social, cat = SocialTask(SOCIAL, N_USERS).to("meta"), category(MULTI).to("meta")
    assert {t.device.type for t in (social.csr_dst, social.csr_degree, social.csr_start, cat.row_of)} == {"meta"}
    assert social.sampler.device.type == "meta"
    assert not hasattr(RecTask(SOCIAL, N_ITEMS), "csr_dst")  # the main task never samples for anchors


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_sample_for_on_cuda_matches_the_edge_list():
    dev = torch.device("cuda")
    social, cat = SocialTask(SOCIAL, N_USERS).to(dev), category(MULTI).to(dev)
    g = torch.Generator(device=dev).manual_seed(0)
    f = social.sample_for(torch.tensor([0, 1, 4], device=dev), g)
    nbrs = neighbours(SOCIAL)
    assert f["anchor"][1].device.type == "cuda" and f["neg"][1].device.type == "cuda"
    assert all(p in nbrs[a] and q not in nbrs[a] for a, p, q in zip(*(f[k][1].tolist() for k in f)))
    assert sorted(cat.sample_for(torch.tensor([2, 1, 5], device=dev), g)["item"][1].tolist()) == [2, 5]


def test_aux_sampling_config_key():
    assert load_config()["train"]["aux_sampling"] == "independent"
    assert load_config(overrides=["train.aux_sampling=anchored"])["train"]["aux_sampling"] == "anchored"
    with pytest.raises(ConfigError, match="train.aux_sampling: expected one of independent, anchored, got 'rows'"):
        load_config(overrides=["train.aux_sampling=rows"])


def test_anchored_training_samples_for_the_rec_batch_end_to_end(tiny_data):
    """Needs ``Trainer._sample`` to honour ``train.aux_sampling`` (pmtrec/training/trainer.py)."""
    from pmtrec.train import Trainer

    cfg = tiny_config("train.aux_sampling=anchored", "train.method=ew", epochs=2)
    tr = Trainer(cfg, tiny_data)
    assert tr.task_names == ("rec", "social", "category", "coview")
    rec = next(tr.tasks[0].epoch_batches(64, tr.gen))
    _, social, cat, coview = tr._sample(rec)
    friends = neighbours(tiny_data.social)
    users = set(rec["anchor"][1].tolist())
    items = set(torch.cat([rec["pos"][1], rec["neg"][1]]).tolist())
    assert sorted(social["anchor"][1].tolist()) == sorted(u for u in users if u in friends)
    assert sorted(cat["item"][1].tolist()) == sorted(items & set(tiny_data.item_category[:, 0].tolist()))
    assert sorted(coview["anchor"][1].tolist()) == sorted(items & set(tiny_data.coview[:, 0].tolist()))
    tr.fit(log=lambda *_: None)
    assert len(tr.history) == 2
    assert all(np.isfinite(v) and v > 0 for e in tr.history for v in e["loss"].values())
