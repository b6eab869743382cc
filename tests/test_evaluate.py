"""Tests for pmtrec.evaluate: metrics, ranking protocol, groups and baselines."""

from __future__ import annotations

import json
import math
from collections import defaultdict

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pmtrec.errors import DataError, PmtrecError
from pmtrec.methods.mostpop import mostpop_scores
from pmtrec.evaluate import (
    METRICS,
    EvalResult,
    activity_groups,
    evaluate_ranking,
    mf_score_fn,
    top_k_items,
)

INF = math.inf


def table_fn(table: torch.Tensor):
    """score_fn reading fixed scores from a table (independent of the batch)."""
    return lambda users: table[users]


def reference(scores: np.ndarray, targets, exclude, ks):
    """Brute-force per-user metrics straight from the definitions (pure Python)."""
    tset, eset = defaultdict(set), defaultdict(set)
    for u, i in np.asarray(targets).reshape(-1, 2):
        tset[int(u)].add(int(i))
    for part in exclude:
        for u, i in np.asarray(part).reshape(-1, 2):
            eset[int(u)].add(int(i))
    users = sorted(tset)
    out = {f"{m}@{k}": [] for m in METRICS for k in ks}
    n_items = scores.shape[1]
    for u in users:
        cand = [i for i in range(n_items) if i not in eset[u] and scores[u, i] != -INF]
        cand.sort(key=lambda i: (-scores[u, i], i))
        for k in ks:
            ranks = [r + 1 for r, i in enumerate(cand[:k]) if i in tset[u]]
            h, nt = len(ranks), len(tset[u])
            dcg = sum(1 / math.log2(r + 1) for r in ranks)
            idcg = sum(1 / math.log2(r + 1) for r in range(1, min(nt, k) + 1))
            out[f"recall@{k}"].append(h / nt)
            out[f"precision@{k}"].append(h / k)
            out[f"hit@{k}"].append(1.0 if h else 0.0)
            out[f"ndcg@{k}"].append(dcg / idcg)
            out[f"mrr@{k}"].append(1 / ranks[0] if ranks else 0.0)
            # RecBole's MAP: precision@r summed over hit ranks r, over min(|T_u|, K)
            out[f"map@{k}"].append(sum((j + 1) / r for j, r in enumerate(ranks)) / min(nt, k))
    return np.array(users, dtype=np.int64), {key: np.array(v) for key, v in out.items()}


# ---------------------------------------------------------------- hand-computed example

# user 0: distinct scores, item 0 excluded -> ranking 1,2,3,4,5; targets {1,3,5}
# user 1: items 0,1,3 tie at 0.5 (lower id first), item 2 excluded -> ranking 0,1,3,5,4; target {3}
# user 2: no target -> not evaluated
HAND_SCORES = torch.tensor(
    [
        [0.9, 0.8, 0.7, 0.6, 0.5, 0.4],
        [0.5, 0.5, 0.9, 0.5, 0.1, 0.2],
        [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
    ]
)
HAND_TARGETS = np.array([[0, 1], [0, 3], [0, 5], [1, 3]])
HAND_EXCLUDE = [np.array([[0, 0]]), np.array([[1, 2], [2, 5]])]

IDCG3 = 1 + 0.6309297535714575 + 0.5  # 1/log2(2) + 1/log2(3) + 1/log2(4)
HAND_PER_USER = {
    # user 0: top1 = [1] (hit at rank 1); top3 = [1,2,3] (hits at 1,3); top10 = [1,2,3,4,5] (hits at 1,3,5)
    # user 1: top1 = [0] (no hit); top3 = [0,1,3] (hit at 3); top10 = [0,1,3,5,4] (hit at 3)
    "recall@1": [1 / 3, 0.0],
    "precision@1": [1.0, 0.0],
    "hit@1": [1.0, 0.0],
    "ndcg@1": [1.0, 0.0],
    "recall@3": [2 / 3, 1.0],
    "precision@3": [2 / 3, 1 / 3],
    "hit@3": [1.0, 1.0],
    "ndcg@3": [(1 + 0.5) / IDCG3, 0.5],  # 0.7039180890341347, 1/log2(4) / 1
    "recall@10": [1.0, 1.0],
    "precision@10": [0.3, 0.1],  # divided by K even though only 5 items can be ranked
    "hit@10": [1.0, 1.0],
    "ndcg@10": [(1 + 0.5 + 0.38685280723454163) / IDCG3, 0.5],  # 0.8854598815714874
    # first hit at rank 1 (user 0) and rank 3 (user 1)
    "mrr@1": [1.0, 0.0],
    "mrr@3": [1.0, 1 / 3],
    "mrr@10": [1.0, 1 / 3],
    # user 0: precision@1 = 1, @3 = 2/3, @5 = 3/5 at its hits, over min(3, K); user 1: 1/3 over 1
    "map@1": [1.0, 0.0],
    "map@3": [(1 + 2 / 3) / 3, 1 / 3],
    "map@10": [(1 + 2 / 3 + 3 / 5) / 3, 1 / 3],  # 34/45
}


def test_hand_computed_metrics():
    res = evaluate_ranking(table_fn(HAND_SCORES), 3, 6, HAND_TARGETS, HAND_EXCLUDE, ks=(1, 3, 10), batch_size=2)
    assert res.users.tolist() == [0, 1]
    families = ("recall", "ndcg", "precision", "hit", "mrr", "map")
    assert METRICS == families
    assert list(res.metrics) == [f"{m}@{k}" for m in families for k in (1, 3, 10)]
    assert set(res.per_user) == set(HAND_PER_USER)
    for key, expected in HAND_PER_USER.items():
        np.testing.assert_allclose(res.per_user[key], expected, rtol=0, atol=1e-12, err_msg=key)
        assert res.metrics[key] == pytest.approx(np.mean(expected), abs=1e-12), key
    assert res.per_user["ndcg@3"][0] == pytest.approx(0.7039180890341347, abs=1e-12)
    assert res.per_user["ndcg@10"][0] == pytest.approx(0.8854598815714874, abs=1e-12)
    assert res.metrics["recall@1"] == pytest.approx(1 / 6)
    assert res.metrics["ndcg@3"] == pytest.approx(0.6019590445170673)
    assert res.metrics["ndcg@10"] == pytest.approx(0.6927299407857437)
    assert res.per_user["map@10"][0] == pytest.approx(34 / 45, abs=1e-12)
    assert res.metrics["mrr@3"] == pytest.approx(2 / 3)


def test_hand_example_top_k_items():
    top = top_k_items(table_fn(HAND_SCORES), np.array([0, 1, 2]), 6, 7, HAND_EXCLUDE)
    assert top.tolist() == [
        [1, 2, 3, 4, 5, -1, -1],
        [0, 1, 3, 5, 4, -1, -1],
        [4, 3, 2, 1, 0, -1, -1],
    ]


def test_scores_table_not_modified():
    table = HAND_SCORES.clone()
    evaluate_ranking(table_fn(table), 3, 6, HAND_TARGETS, HAND_EXCLUDE, ks=(1, 3))
    assert torch.equal(table, HAND_SCORES)


# ---------------------------------------------------------------- brute-force reference


@st.composite
def problems(draw):
    n_users = draw(st.integers(1, 8))
    n_items = draw(st.integers(1, 12))
    seed = draw(st.integers(0, 2**32 - 1))
    tied = draw(st.booleans())
    rng = np.random.default_rng(seed)
    if tied:
        scores = rng.integers(0, 3, size=(n_users, n_items)).astype(np.float32)
    else:
        scores = rng.standard_normal((n_users, n_items)).astype(np.float32)
    if draw(st.booleans()):
        scores[rng.random((n_users, n_items)) < 0.1] = -INF  # model-side -inf = excluded
    n_t = draw(st.integers(1, 3 * n_users))
    targets = np.stack([rng.integers(0, n_users, n_t), rng.integers(0, n_items, n_t)], 1)
    n_e = draw(st.integers(0, n_users * n_items))
    exclude = np.stack([rng.integers(0, n_users, n_e), rng.integers(0, n_items, n_e)], 1)
    split = draw(st.integers(0, n_e))
    ks = draw(st.lists(st.integers(1, 15), min_size=1, max_size=4, unique=True))
    batch_size = draw(st.integers(1, 9))
    return scores, targets, [exclude[:split], exclude[split:]], tuple(ks), batch_size


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_matches_bruteforce_reference(problem):
    scores, targets, exclude, ks, batch_size = problem
    n_users, n_items = scores.shape
    res = evaluate_ranking(
        table_fn(torch.from_numpy(scores)), n_users, n_items, targets, exclude, ks=ks, batch_size=batch_size
    )
    users, expected = reference(scores, targets, exclude, sorted(ks))
    np.testing.assert_array_equal(res.users, users)
    assert set(res.per_user) == set(expected) == set(res.metrics)
    for key, values in expected.items():
        np.testing.assert_allclose(res.per_user[key], values, rtol=1e-12, atol=1e-12, err_msg=key)
        assert res.metrics[key] == pytest.approx(values.mean(), abs=1e-12)


def test_matches_reference_medium_ties_across_cut():
    # many tied scores so the K-th position falls inside a tie for most users
    rng = np.random.default_rng(1)
    n_users, n_items = 40, 300
    scores = rng.integers(0, 6, size=(n_users, n_items)).astype(np.float32)
    targets = np.stack([rng.integers(0, n_users, 400), rng.integers(0, n_items, 400)], 1)
    exclude = np.stack([rng.integers(0, n_users, 2000), rng.integers(0, n_items, 2000)], 1)
    ks = (5, 20, 50)
    res = evaluate_ranking(table_fn(torch.from_numpy(scores)), n_users, n_items, targets, [exclude], ks=ks, batch_size=16)
    _, expected = reference(scores, targets, [exclude], ks)
    for key, values in expected.items():
        np.testing.assert_allclose(res.per_user[key], values, rtol=1e-12, atol=1e-12, err_msg=key)


# ---------------------------------------------------------------- protocol properties


def test_batch_size_independence():
    rng = np.random.default_rng(7)
    n_users, n_items = 23, 40
    scores = torch.from_numpy(rng.integers(0, 4, size=(n_users, n_items)).astype(np.float32))
    targets = np.stack([rng.integers(0, n_users, 80), rng.integers(0, n_items, 80)], 1)
    exclude = np.stack([rng.integers(0, n_users, 150), rng.integers(0, n_items, 150)], 1)
    results = [
        evaluate_ranking(table_fn(scores), n_users, n_items, targets, exclude, ks=(3, 10, 25), batch_size=bs)
        for bs in (1, 3, 7, 1024)
    ]
    tops = [top_k_items(table_fn(scores), np.arange(n_users), n_items, 25, exclude, batch_size=bs) for bs in (1, 3, 7, 64)]
    base = results[0]
    for other in results[1:]:
        np.testing.assert_array_equal(other.users, base.users)
        for key in base.per_user:
            np.testing.assert_array_equal(other.per_user[key], base.per_user[key], err_msg=key)
    for top in tops[1:]:
        np.testing.assert_array_equal(top, tops[0])


def test_excluded_items_never_in_top_k():
    rng = np.random.default_rng(3)
    n_users, n_items = 12, 30
    scores = torch.from_numpy(rng.standard_normal((n_users, n_items)).astype(np.float32))
    # exclude each user's 5 best-scored items: the ones that would otherwise lead
    best = torch.topk(scores, 5, dim=1).indices.numpy()
    exclude = np.stack([np.repeat(np.arange(n_users), 5), best.ravel()], 1)
    top = top_k_items(table_fn(scores), np.arange(n_users), n_items, 10, [exclude], batch_size=5)
    for u in range(n_users):
        assert not set(top[u]) & set(best[u])
        assert (top[u] >= 0).all()
    # excluded items that are also targets are never hit, however high they score
    res = evaluate_ranking(table_fn(scores), n_users, n_items, exclude, [exclude], ks=(1, 10, 30))
    for key, values in res.per_user.items():
        assert (values == 0).all(), key
    # and fewer than K rankable items leave -1 slots, never excluded ones
    top = top_k_items(table_fn(scores), np.arange(n_users), n_items, 30, [exclude])
    assert (top[:, 25:] == -1).all() and (top[:, :25] >= 0).all()


def test_users_without_targets_are_not_evaluated():
    seen = []
    scores = torch.rand(10, 8)

    def fn(users):
        seen.append(users.clone())
        return scores[users]

    targets = np.array([[7, 1], [2, 3], [7, 4], [2, 3]])
    res = evaluate_ranking(fn, 10, 8, targets, [], ks=(2,), batch_size=1)
    assert res.users.tolist() == [2, 7]
    assert torch.cat(seen).tolist() == [2, 7]
    assert all(len(v) == 2 for v in res.per_user.values())
    # duplicate target pair (2, 3) counts once
    assert res.per_user["recall@2"][0] in (0.0, 1.0)


def test_integer_and_expanded_scores_are_accepted():
    pop = torch.tensor([3, 1, 2, 0])
    res = evaluate_ranking(lambda u: pop.expand(len(u), -1), 2, 4, np.array([[0, 2], [1, 1]]), [], ks=(1, 2))
    assert res.per_user["hit@2"].tolist() == [1.0, 0.0]
    assert pop.tolist() == [3, 1, 2, 0]


def test_mf_score_fn():
    ue, ie = torch.randn(5, 3), torch.randn(7, 3)
    users = torch.tensor([4, 0, 2])
    torch.testing.assert_close(mf_score_fn(ue, ie)(users), ue[users] @ ie.T)
    with pytest.raises(PmtrecError):
        mf_score_fn(ue, torch.randn(7, 4))


# ---------------------------------------------------------------- groups


def test_activity_groups_equal_sizes_and_monotone():
    rng = np.random.default_rng(0)
    n = 103
    counts = rng.geometric(0.2, size=n)  # every user active, heavy ties
    train = np.stack([np.repeat(np.arange(n), counts), rng.integers(0, 50, counts.sum())], 1)
    groups = activity_groups(train, n, n_groups=5)
    sizes = np.bincount(groups, minlength=5)
    assert sizes.sum() == n and sizes.max() - sizes.min() <= 1
    for g in range(4):
        assert counts[groups == g].max() <= counts[groups == g + 1].min()
    # ties broken by lower id: among equal counts, group ids never decrease with id
    for c in np.unique(counts):
        ids = np.flatnonzero(counts == c)
        assert (np.diff(groups[ids]) >= 0).all()


def test_activity_groups_zero_count_and_items():
    # items: 0 -> 0 pairs, 1 -> 1, 2 -> 2, 3 -> 3, 4 -> 4, 5 -> 0 pairs
    train = np.array([[0, 1], [0, 2], [1, 2], [0, 3], [1, 3], [2, 3], [0, 4], [1, 4], [2, 4], [3, 4]])
    assert activity_groups(train, 6, n_groups=2, column=1).tolist() == [0, 0, 0, 1, 1, 0]
    assert activity_groups(train, 6, n_groups=4, column=1).tolist() == [0, 0, 1, 2, 3, 0]
    # users: 0 -> 4 pairs, 1 -> 3, 2 -> 2, 3 -> 1, 4 -> 0
    assert activity_groups(train, 5, n_groups=2, column=0).tolist() == [1, 1, 0, 0, 0]
    with pytest.raises(DataError):
        activity_groups(train, 3, column=1)
    with pytest.raises(PmtrecError):
        activity_groups(train, 6, n_groups=0)
    with pytest.raises(PmtrecError):
        activity_groups(train, 6, column=2)


def test_group_metrics_are_means_of_per_user():
    rng = np.random.default_rng(5)
    n_users, n_items = 30, 25
    scores = torch.from_numpy(rng.standard_normal((n_users, n_items)))
    train = np.stack([rng.integers(0, n_users, 200), rng.integers(0, n_items, 200)], 1)
    targets = np.stack([rng.integers(0, n_users - 3, 60), rng.integers(0, n_items, 60)], 1)
    groups = activity_groups(train, n_users, 4)
    groups[n_users - 3 :] = 5  # users without targets only: groups 4 and 5 end up empty or not
    res = evaluate_ranking(table_fn(scores), n_users, n_items, targets, train, ks=(5, 10), user_groups=groups)
    assert list(res.groups) == ["0", "1", "2", "3", "4", "5"]
    g_of = groups[res.users]
    for label, metrics in res.groups.items():
        mask = g_of == int(label)
        assert metrics["n_users"] == mask.sum()
        for key, values in res.per_user.items():
            if mask.any():
                assert metrics[key] == pytest.approx(values[mask].mean(), abs=1e-12)
            else:
                assert math.isnan(metrics[key])
    assert sum(m["n_users"] for m in res.groups.values()) == len(res.users)
    assert res.groups["4"]["n_users"] == 0 and res.groups["5"]["n_users"] == 0
    d = res.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["overall"] == res.metrics
    assert d["groups"]["4"]["recall@5"] is None and d["groups"]["4"]["n_users"] == 0
    assert d["groups"]["0"]["ndcg@10"] == res.groups["0"]["ndcg@10"]


def test_to_dict_without_groups():
    res = EvalResult(metrics={"recall@1": 0.5}, per_user={"recall@1": np.array([0.5])}, users=np.array([0]), groups={})
    assert res.to_dict() == {"overall": {"recall@1": 0.5}, "groups": {}}


# ---------------------------------------------------------------- MostPop


def test_mostpop_ranks_by_train_popularity():
    # popularity: item 0 -> 1, 1 -> 3, 2 -> 0, 3 -> 3, 4 -> 2 (duplicate pair (0, 1) counted once)
    train = np.array([[0, 0], [0, 1], [0, 1], [1, 1], [2, 1], [0, 3], [1, 3], [2, 3], [1, 4], [2, 4]])
    pop = mostpop_scores(train, 5)
    assert pop.dtype == torch.float32
    assert pop.tolist() == [1.0, 3.0, 0.0, 3.0, 2.0]
    fn = lambda users: pop.expand(len(users), -1)  # noqa: E731
    top = top_k_items(fn, np.array([3, 4]), 5, 5)
    assert top.tolist() == [[1, 3, 4, 0, 2], [1, 3, 4, 0, 2]]  # ties (1, 3) by lower id
    top = top_k_items(fn, np.array([0]), 5, 5, exclude=train)
    assert top.tolist() == [[4, 2, -1, -1, -1]]
    assert pop.tolist() == [1.0, 3.0, 0.0, 3.0, 2.0]
    # user 3 wants item 3 (rank 2), user 4 wants item 2 (rank 5)
    res = evaluate_ranking(fn, 5, 5, np.array([[3, 3], [4, 2]]), train, ks=(1, 2, 5))
    assert res.per_user["hit@1"].tolist() == [0.0, 0.0]
    assert res.per_user["hit@2"].tolist() == [1.0, 0.0]
    assert res.per_user["ndcg@5"].tolist() == pytest.approx([1 / math.log2(3), 1 / math.log2(6)])
    assert mostpop_scores(np.zeros((0, 2), dtype=np.int64), 3).tolist() == [0.0, 0.0, 0.0]


# ---------------------------------------------------------------- errors


def test_errors_are_one_line_pmtrec_errors():
    fn = table_fn(HAND_SCORES)
    cases = [
        dict(targets=np.array([[3, 0]])),  # user out of range
        dict(targets=np.array([[0, 6]])),  # item out of range
        dict(targets=np.array([[0, -1]])),
        dict(targets=np.zeros((0, 2), dtype=np.int64)),  # nothing to evaluate
        dict(targets=np.array([0, 1, 2])),  # wrong shape
        dict(targets=np.array([[0.0, 1.0]])),  # not integer
        dict(exclude=[np.array([[0, 9]])]),
        dict(ks=()),
        dict(ks=(0, 5)),
        dict(batch_size=0),
        dict(user_groups=np.zeros(2, dtype=np.int64)),
        dict(user_groups=np.array([0, -1, 0])),
    ]
    for case in cases:
        kwargs = dict(targets=HAND_TARGETS, exclude=HAND_EXCLUDE, ks=(1, 3)) | case
        with pytest.raises(PmtrecError) as info:
            evaluate_ranking(fn, 3, 6, **kwargs)
        assert "\n" not in str(info.value) and str(info.value), case


def test_bad_scores_raise():
    with pytest.raises(PmtrecError, match="shape"):
        evaluate_ranking(lambda u: torch.zeros(len(u), 5), 3, 6, HAND_TARGETS, [], ks=(1,))
    nan_scores = HAND_SCORES.clone()
    nan_scores[1, 4] = math.nan
    with pytest.raises(PmtrecError, match="NaN"):
        evaluate_ranking(table_fn(nan_scores), 3, 6, HAND_TARGETS, [], ks=(1,), batch_size=1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    rng = np.random.default_rng(11)
    n_users, n_items = 50, 400
    scores = rng.integers(0, 8, size=(n_users, n_items)).astype(np.float32)
    targets = np.stack([rng.integers(0, n_users, 300), rng.integers(0, n_items, 300)], 1)
    exclude = np.stack([rng.integers(0, n_users, 3000), rng.integers(0, n_items, 3000)], 1)
    groups = activity_groups(exclude, n_users, 3)
    cpu = evaluate_ranking(table_fn(torch.from_numpy(scores)), n_users, n_items, targets, [exclude], user_groups=groups)
    gpu_table = torch.from_numpy(scores).cuda()
    gpu = evaluate_ranking(
        table_fn(gpu_table), n_users, n_items, targets, [exclude], batch_size=16, device="cuda", user_groups=groups
    )
    for key in cpu.per_user:
        np.testing.assert_array_equal(gpu.per_user[key], cpu.per_user[key], err_msg=key)
    assert gpu.to_dict() == cpu.to_dict()
    ue, ie = torch.randn(n_users, 16), torch.randn(n_items, 16)
    a = evaluate_ranking(mf_score_fn(ue, ie), n_users, n_items, targets, [exclude])
    b = evaluate_ranking(mf_score_fn(ue.cuda(), ie.cuda()), n_users, n_items, targets, [exclude], device="cuda")
    for key in a.metrics:
        assert b.metrics[key] == pytest.approx(a.metrics[key], abs=1e-6)
