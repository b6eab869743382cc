"""MRR@K and MAP@K against brute force, their properties, and a cross-check with ``ranx``.

The brute force below is plain Python per user, written from RecBole's definitions
(recbole/evaluator/metrics.py). Scores are continuous random draws, so there are no ties
and every implementation ranks the same list. ``ranx`` is an independent implementation
(test-only dependency): it is asked for the same metrics on the same ranked lists, and the
one known difference of definition, MAP's normaliser, is converted before comparing.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pmtrec.evaluate import evaluate_ranking

KS = (1, 3, 5, 10, 25, 40)  # 40 > n_items below: more than can be ranked


def random_problem(seed: int, n_users: int = 30, n_items: int = 25):
    """Distinct float64 scores, random targets (some users none), random seen items."""
    rng = np.random.default_rng(seed)
    scores = rng.standard_normal((n_users, n_items))
    assert len(np.unique(scores)) == scores.size  # no ties
    has_targets = rng.random(n_users) < 0.8
    tmask = (rng.random((n_users, n_items)) < rng.uniform(0.02, 0.4, (n_users, 1))) & has_targets[:, None]
    # seen items: disjoint from the targets except a few, which must still count in |T_u|
    emask = (rng.random((n_users, n_items)) < 0.2) & (~tmask | (rng.random((n_users, n_items)) < 0.1))
    targets = np.argwhere(tmask)
    exclude = np.argwhere(emask)
    return scores, targets, exclude


def ranked_lists(scores: np.ndarray, exclude: np.ndarray) -> dict[int, list[int]]:
    """Every user's items, best first, without its seen items (plain Python)."""
    seen = {(int(u), int(i)) for u, i in exclude}
    n_users, n_items = scores.shape
    return {
        u: sorted((i for i in range(n_items) if (u, i) not in seen), key=lambda i: -scores[u, i])
        for u in range(n_users)
    }


def brute_force(scores, targets, exclude, ks):
    """users, {"mrr@K": [...], "map@K": [...]} straight from the definitions, user by user."""
    ranking = ranked_lists(scores, exclude)
    rel: dict[int, set[int]] = {}
    for u, i in targets:
        rel.setdefault(int(u), set()).add(int(i))
    users = sorted(rel)
    out = {f"{m}@{k}": [] for m in ("mrr", "map") for k in ks}
    for u in users:
        for k in ks:
            top = ranking[u][:k]
            first = next((r for r, i in enumerate(top, start=1) if i in rel[u]), None)
            out[f"mrr@{k}"].append(0.0 if first is None else 1.0 / first)
            ap = 0.0
            for r in range(1, len(top) + 1):  # sum over k' <= K of precision@k' * rel_k'
                if top[r - 1] in rel[u]:
                    ap += sum(i in rel[u] for i in top[:r]) / r
            out[f"map@{k}"].append(ap / min(len(rel[u]), k))
    return np.array(users), {key: np.array(v) for key, v in out.items()}


def run_pmtrec(scores, targets, exclude, ks=KS, batch_size=7):
    table = torch.from_numpy(scores)
    n_users, n_items = scores.shape
    return evaluate_ranking(lambda u: table[u], n_users, n_items, targets, [exclude], ks=ks, batch_size=batch_size)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_mrr_map_match_brute_force(seed):
    scores, targets, exclude = random_problem(seed)
    res = run_pmtrec(scores, targets, exclude)
    users, expected = brute_force(scores, targets, exclude, KS)
    # users with no target are not evaluated, as for every other metric
    np.testing.assert_array_equal(res.users, users)
    assert len(users) < scores.shape[0]
    for key, values in expected.items():
        np.testing.assert_allclose(res.per_user[key], values, rtol=0, atol=1e-12, err_msg=key)
        assert res.metrics[key] == pytest.approx(values.mean(), abs=1e-12), key
    # the problem is not trivial: some users score strictly between 0 and 1
    assert ((expected["map@10"] > 0) & (expected["map@10"] < 1)).any()


def test_properties_on_random_data():
    scores, targets, exclude = random_problem(7, n_users=200, n_items=60)
    res = run_pmtrec(scores, targets, exclude, ks=(1, 5, 20, 60, 100), batch_size=64)
    pu = res.per_user
    n_rel = np.bincount(targets[:, 0], minlength=scores.shape[0])[res.users]
    for k in (1, 5, 20, 60, 100):
        mrr, ap, hit = pu[f"mrr@{k}"], pu[f"map@{k}"], pu[f"hit@{k}"]
        assert (mrr <= hit).all() and (mrr >= hit / k).all()  # 1/rank with rank <= K, 0 without a hit
        np.testing.assert_array_equal(mrr > 0, hit > 0)
        assert ((ap >= 0) & (ap <= 1 + 1e-12)).all()
        np.testing.assert_array_equal(ap > 0, hit > 0)
        # one relevant item: average precision is its reciprocal rank
        np.testing.assert_allclose(ap[n_rel == 1], mrr[n_rel == 1], rtol=0, atol=1e-15)
    for a, b in ((1, 5), (5, 20), (20, 60)):
        assert (pu[f"mrr@{a}"] <= pu[f"mrr@{b}"]).all()  # a longer list can only find the first hit sooner
    # at K = 1 all four agree: the top item is a target or not
    for key in ("map@1", "precision@1", "hit@1"):
        np.testing.assert_array_equal(pu["mrr@1"], pu[key])


def test_map_and_mrr_are_one_when_targets_lead():
    # every user's targets get the highest scores: MAP@K = 1 for every K (RecBole's min(|T|, K)
    # normaliser), MRR@K = 1; with |T| > K recall stays below 1 but MAP does not
    rng = np.random.default_rng(3)
    n_users, n_items = 40, 30
    scores = rng.random((n_users, n_items))
    n_rel = rng.integers(1, 15, n_users)
    targets = np.concatenate([np.stack([np.full(n, u), rng.permutation(n_items)[:n]], 1) for u, n in enumerate(n_rel)])
    scores[targets[:, 0], targets[:, 1]] += 2.0
    res = run_pmtrec(scores, targets, np.zeros((0, 2), dtype=np.int64), ks=(1, 5, 10, 50))
    for k in (1, 5, 10, 50):
        np.testing.assert_allclose(res.per_user[f"map@{k}"], 1.0, rtol=0, atol=1e-12)
        np.testing.assert_array_equal(res.per_user[f"mrr@{k}"], 1.0)
    assert (res.per_user["recall@5"][n_rel > 5] < 1).all()
    # the same targets ranked last: nothing found in the top 10 of 30 items when |T| <= 20
    res = run_pmtrec(-scores, targets, np.zeros((0, 2), dtype=np.int64), ks=(10,))
    few = n_rel <= 20
    assert (res.per_user["map@10"][few] == 0).all() and (res.per_user["mrr@10"][few] == 0).all()


def test_seen_target_still_counts_in_map_normaliser():
    # user 0: targets {0, 1}, item 0 is also seen; ranking (item 0 removed) puts item 1 first
    scores = np.array([[0.9, 0.8, 0.7, 0.6]])
    res = run_pmtrec(scores, np.array([[0, 0], [0, 1]]), np.array([[0, 0]]), ks=(1, 3))
    assert res.per_user["mrr@1"].tolist() == [1.0]
    assert res.per_user["map@1"].tolist() == [1.0]  # min(|T| = 2, K = 1) = 1
    assert res.per_user["map@3"].tolist() == [0.5]  # precision@1 = 1, over min(2, 3)
    assert res.per_user["recall@3"].tolist() == [0.5]


@pytest.mark.parametrize("seed", [0, 5])
def test_cross_check_with_ranx(seed):
    ranx = pytest.importorskip("ranx")
    scores, targets, exclude = random_problem(seed, n_users=60, n_items=40)
    ks = (1, 5, 10, 20, 50)  # 50 > n_items: ranx and pmtrec both still divide precision by K
    res = run_pmtrec(scores, targets, exclude, ks=ks)
    ranking = ranked_lists(scores, exclude)
    qrels_d: dict[str, dict[str, int]] = {}
    for u, i in targets:  # seen targets stay in the qrels: they count in |T_u| but are never retrieved
        qrels_d.setdefault(str(u), {})[str(i)] = 1
    run_d = {q: {str(i): float(scores[int(q), i]) for i in ranking[int(q)]} for q in qrels_d}
    assert all(run_d.values())  # every evaluated user has items to rank
    qrels, run = ranx.Qrels.from_dict(qrels_d), ranx.Run.from_dict(run_d)
    names = [f"{m}@{k}" for m in ("ndcg", "recall", "precision", "hit_rate", "mrr", "map") for k in ks]
    ranx.evaluate(qrels, run, names, make_comparable=True)
    got = {q: {n: float(run.scores[n][q]) for n in names} for q in qrels_d}

    n_rel = {q: len(v) for q, v in qrels_d.items()}
    for row, u in enumerate(res.users):
        q = str(u)
        for k in ks:
            theirs = got[q]
            for ours, name in (("ndcg", "ndcg"), ("recall", "recall"), ("precision", "precision"),
                               ("hit", "hit_rate"), ("mrr", "mrr")):
                assert res.per_user[f"{ours}@{k}"][row] == pytest.approx(theirs[f"{name}@{k}"], abs=1e-12), (
                    f"{ours}@{k} user {u}")
            # ranx's AP divides by |T_u|, RecBole's (and pmtrec's) by min(|T_u|, K)
            expected_map = theirs[f"map@{k}"] * n_rel[q] / min(n_rel[q], k)
            assert res.per_user[f"map@{k}"][row] == pytest.approx(expected_map, abs=1e-12), f"map@{k} user {u}"
    # the comparison is not vacuous: ranx's MAP really differs where |T_u| > K
    over = [q for q in got if n_rel[q] > 5 and got[q]["map@5"] > 0]
    assert over and all(got[q]["map@5"] < res.per_user["map@5"][np.searchsorted(res.users, int(q))] for q in over)
    assert not math.isclose(res.metrics["ndcg@10"], 0.0)
