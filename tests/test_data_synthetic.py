"""The synthetic generator: determinism, sizes, and its planted structure."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy.sparse.linalg import svds

from pmtrec.config import load_config
from pmtrec.data import load_source, preprocess
from pmtrec.data.sources.synthetic import generate
from pmtrec.errors import ConfigError

CORE = {"user_core": 5, "item_core": 3, "seed": 0}


@pytest.fixture(scope="module")
def small():
    raw, truth = generate("small", 0)
    return raw, truth, preprocess(raw, CORE)


def test_tiny_is_fast_deterministic_and_seed_dependent():
    t = time.perf_counter()
    a, _ = generate("tiny", 3)
    assert time.perf_counter() - t < 1.0
    b, _ = generate("tiny", 3)
    c, _ = generate("tiny", 4)
    for attr in ("interactions", "social", "item_category", "coview"):
        pd.testing.assert_frame_equal(getattr(a, attr), getattr(b, attr))
    assert not a.interactions.equals(c.interactions)


def test_config_entry_point_sizes_and_scale():
    tiny = load_source(load_config())
    assert tiny.name == "synthetic-tiny"
    assert tiny.interactions["user"].nunique() == 300 and 350 <= tiny.interactions["item"].nunique() <= 400
    assert 4000 <= len(tiny.interactions) <= 7000
    half = load_source(load_config(overrides=["dataset.synthetic.size=small", "dataset.synthetic.scale=0.5"]))
    assert half.name == "synthetic-small-x0.5"
    assert half.interactions["user"].nunique() == 1500 and 25_000 <= len(half.interactions) <= 35_000
    with pytest.raises(ConfigError, match=r"dataset\.synthetic\.size: unknown size 'huge'"):
        load_source(load_config(overrides=["dataset.synthetic.size=huge"]))
    with pytest.raises(ConfigError, match=r"dataset\.synthetic\.scale: expected a positive number, got -1"):
        load_source(load_config(overrides=["dataset.synthetic.scale=-1"]))


def test_small_has_the_advertised_size(small):
    raw, _, p = small
    assert raw.interactions["user"].nunique() == 3000 and 50_000 <= len(raw.interactions) <= 70_000
    assert 2500 <= p.n_users <= 3000 and 2000 <= p.n_items <= 3000
    assert set(raw.interactions.columns) == {"user", "item", "rating", "timestamp"}
    assert not raw.interactions.duplicated(["user", "item"]).any()


def test_heavy_tailed_activity_and_popularity(small):
    raw, _, p = small
    per_user = raw.interactions.groupby("user").size().to_numpy()
    assert np.mean(per_user <= 8) > 0.25          # many users with few interactions
    assert per_user.max() > 8 * np.median(per_user)  # and a long tail of heavy users
    assert p.stats["cold_users_frac"] > 0.2
    per_item = np.sort(raw.interactions.groupby("item").size().to_numpy())[::-1]
    assert per_item[: len(per_item) // 10].sum() > 0.3 * per_item.sum()  # top 10% items: > 30% of data


def test_social_links_follow_communities(small):
    raw, truth, _ = small
    zu = truth["user_community"]
    a, b = raw.social["user"].to_numpy() - 1, raw.social["friend"].to_numpy() - 1
    same = np.mean(zu[a] == zu[b])
    chance = np.sum((np.bincount(zu) / len(zu)) ** 2)
    assert same > 0.75 and same > 8 * chance
    assert (a != b).all()


def test_categories_and_coviews_follow_item_communities(small):
    raw, truth, _ = small
    zi = truth["item_community"]
    cat = raw.item_category["category"].to_numpy() - 1
    items = raw.item_category["item"].to_numpy() - 1
    assert np.mean(cat // 2 == zi[items]) > 0.9
    a, b = raw.coview["item"].to_numpy() - 1, raw.coview["other"].to_numpy() - 1
    assert np.mean(zi[a] == zi[b]) > 0.95


def test_scale_grows_communities_but_not_categories():
    base_raw, base_truth = generate("tiny", 0)
    raw, truth = generate("tiny", 0, scale=4)
    assert truth["spec"].communities == 2 * base_truth["spec"].communities == 12
    assert raw.item_category["category"].nunique() == base_raw.item_category["category"].nunique() == 12
    zi = truth["item_community"]
    cat = raw.item_category["category"].to_numpy() - 1
    items = raw.item_category["item"].to_numpy() - 1
    assert np.mean(cat // 2 == zi[items] % 6) > 0.9  # still the (folded) community


def test_timestamps_vary_within_users(small):
    raw, _, _ = small
    ts = raw.interactions.groupby("user")["timestamp"].agg(["min", "max", "nunique", "size"])
    assert (ts["nunique"] >= 0.9 * ts["size"]).mean() > 0.95
    assert ((ts["max"] - ts["min"]) > 86_400).mean() > 0.9
    p = preprocess(raw, {**CORE, "split": "temporal"})
    assert len(p.test) > 0.08 * p.n_interactions


def _recall_at_20(scores: np.ndarray, train: sp.csr_matrix, test: sp.csr_matrix, users: np.ndarray) -> float:
    s = scores[users].copy()
    s[train[users].toarray() > 0] = -np.inf
    top = np.argpartition(-s, 20, axis=1)[:, :20]
    truth = test[users].toarray()
    hits = np.take_along_axis(truth, top, 1).sum(1)
    n = truth.sum(1)
    keep = n > 0
    return float(np.mean(hits[keep] / np.minimum(n[keep], 20)))


def test_matrix_factorisation_beats_popularity_and_friends_help_cold_users(small):
    _, _, p = small
    shape = (p.n_users, p.n_items)
    train = sp.csr_matrix((np.ones(len(p.train)), (p.train[:, 0], p.train[:, 1])), shape=shape)
    test = sp.csr_matrix((np.ones(len(p.test)), (p.test[:, 0], p.test[:, 1])), shape=shape)
    users = np.arange(p.n_users)
    pop = np.asarray(train.sum(0)).ravel()
    pop_scores = np.tile(pop, (p.n_users, 1))
    u, s, vt = svds(train, k=24, random_state=0)
    mf_scores = (u * s) @ vt
    r_pop = _recall_at_20(pop_scores, train, test, users)
    r_mf = _recall_at_20(mf_scores, train, test, users)
    assert r_mf > 2 * r_pop
    # cold users: items of their friends beat popularity
    cold = users[np.asarray(train.sum(1)).ravel() <= 5]
    assert len(cold) > 300
    social = sp.csr_matrix((np.ones(len(p.social)), (p.social[:, 0], p.social[:, 1])), shape=(p.n_users,) * 2)
    friend_scores = (social @ train).toarray() + 1e-3 * pop
    assert _recall_at_20(friend_scores, train, test, cold) > 1.5 * _recall_at_20(pop_scores, train, test, cold)
