"""Preprocessing: validation, dedup, implicit conversion, k-core, re-indexing, splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pmtrec.data import RawFrames, preprocess
from pmtrec.data.preprocessing import kcore, split_counts, undirected
from pmtrec.errors import ConfigError, DataError

NOCORE = {"user_core": 1, "item_core": 1, "seed": 0}


def random_raw(seed: int = 0, n_users: int = 60, n_items: int = 50, n: int = 900, ts: bool = True) -> RawFrames:
    rng = np.random.default_rng(seed)
    users = rng.zipf(1.6, n) % n_users + 1
    items = rng.zipf(1.4, n) % n_items + 1
    inter = pd.DataFrame({"user": users, "item": items, "rating": rng.integers(1, 6, n)})
    if ts:
        inter["timestamp"] = rng.integers(0, 10_000, n)
    social = pd.DataFrame({"user": rng.integers(1, n_users + 5, 200), "friend": rng.integers(1, n_users + 5, 200)})
    cats = pd.DataFrame({"item": np.arange(1, n_items + 6), "category": (np.arange(1, n_items + 6) % 7) * 10})
    coview = pd.DataFrame({"item": rng.integers(1, n_items + 5, 150), "other": rng.integers(1, n_items + 5, 150)})
    return RawFrames("rand", inter, social, cats, coview)


def brute_kcore(pairs: set[tuple], uc: int, ic: int) -> set[tuple]:
    pairs = set(pairs)
    while True:
        du, di = {}, {}
        for u, i in pairs:
            du[u] = du.get(u, 0) + 1
            di[i] = di.get(i, 0) + 1
        keep = {(u, i) for u, i in pairs if du[u] >= uc and di[i] >= ic}
        if keep == pairs:
            return keep
        pairs = keep


def all_pairs(p) -> np.ndarray:
    return np.concatenate([p.train, p.valid, p.test])


def raw_pairs(p) -> set[tuple]:
    return {(p.user_raw[u], p.item_raw[i]) for u, i in all_pairs(p)}


# ----------------------------------------------------------------------------- k-core
@settings(max_examples=40, deadline=None)
@given(st.sets(st.tuples(st.integers(0, 12), st.integers(0, 9)), min_size=1, max_size=120),
       st.integers(1, 5), st.integers(1, 5))
def test_kcore_matches_brute_force_and_meets_the_core(pairs, uc, ic):
    arr = np.array(sorted(pairs))
    mask, _ = kcore(arr[:, 0], arr[:, 1], uc, ic)
    kept = arr[mask]
    assert {tuple(x) for x in kept.tolist()} == brute_kcore(pairs, uc, ic)
    if len(kept):
        assert np.bincount(kept[:, 0])[np.unique(kept[:, 0])].min() >= uc
        assert np.bincount(kept[:, 1])[np.unique(kept[:, 1])].min() >= ic


def test_preprocess_kcore_equals_brute_force_on_random_data():
    raw = random_raw(1)
    p = preprocess(raw, {"user_core": 5, "item_core": 4, "seed": 0})
    dedup = {(str(u), str(i)) for u, i in zip(raw.interactions["user"], raw.interactions["item"])}
    assert raw_pairs(p) == brute_kcore(dedup, 5, 4)
    pairs = all_pairs(p)
    assert np.bincount(pairs[:, 0], minlength=p.n_users).min() >= 5
    assert np.bincount(pairs[:, 1], minlength=p.n_items).min() >= 4
    assert p.stats["kcore_rounds"] >= 1 and p.stats["users"] == p.n_users < 60


def test_empty_after_filtering_is_a_data_error():
    raw = RawFrames("sparse", pd.DataFrame({"user": [1, 2, 3], "item": [1, 2, 3]}))
    with pytest.raises(DataError, match=r"sparse: empty after filtering \(user_core=2, item_core=1"):
        preprocess(raw, {"user_core": 2, "item_core": 1})


# ----------------------------------------------------------------------------- ids and side relations
def test_ids_are_contiguous_in_numeric_raw_order_and_maps_round_trip():
    raw = RawFrames("r", pd.DataFrame({"user": [10, 9, 100, 9], "item": [5, 5, 7, 7]}))
    p = preprocess(raw, NOCORE)
    assert p.user_raw.tolist() == ["9", "10", "100"]
    assert p.item_raw.tolist() == ["5", "7"]
    assert raw_pairs(p) == {("10", "5"), ("9", "5"), ("100", "7"), ("9", "7")}
    assert p.train.dtype == np.int64 and p.train.shape[1] == 2 and (p.n_users, p.n_items) == (3, 2)


def test_side_links_to_filtered_entities_are_dropped_and_made_undirected():
    inter = pd.DataFrame({"user": ["a", "a", "b", "b", "c", "c", "d"], "item": ["x", "y", "x", "y", "x", "y", "z"]})
    social = pd.DataFrame({"user": ["a", "b", "a", "b", "a", "d", "zz"], "friend": ["b", "a", "a", "c", "d", "a", "a"]})
    cats = pd.DataFrame({"item": ["x", "y", "z", "x"], "category": ["k1", "k2", "k3", "k1"]})
    coview = pd.DataFrame({"item": ["x", "y", "z"], "other": ["y", "x", "x"]})
    p = preprocess(RawFrames("s", inter, social, cats, coview), {"user_core": 2, "item_core": 2})
    # d and z fall out of the 2-core
    assert p.user_raw.tolist() == ["a", "b", "c"] and p.item_raw.tolist() == ["x", "y"]
    named = {(p.user_raw[a], p.user_raw[b]) for a, b in p.social}
    assert named == {("a", "b"), ("b", "a"), ("b", "c"), ("c", "b")}  # no self-loop, no dup, no d/zz
    assert p.stats["social_links"] == 2
    assert {(p.item_raw[a], p.category_raw[c]) for a, c in p.item_category} == {("x", "k1"), ("y", "k2")}
    assert p.n_categories == 2 and p.category_raw.tolist() == ["k1", "k2"]  # k3 only on a dropped item
    assert p.coview.tolist() == [[0, 1], [1, 0]]


def test_undirected_helper():
    out = undirected(np.array([0, 1, 2, 2, 3]), np.array([1, 0, 2, 3, -1]), 4)
    assert out.tolist() == [[0, 1], [1, 0], [2, 3], [3, 2]]


def test_relation_with_no_surviving_link_becomes_none():
    inter = pd.DataFrame({"user": [1, 2], "item": [1, 1]})
    p = preprocess(RawFrames("n", inter, social=pd.DataFrame({"user": [1], "friend": [1]}),
                             item_category=pd.DataFrame({"item": [9], "category": [1]})), NOCORE)
    assert p.social is None and p.item_category is None and p.n_categories == 0 and p.coview is None


# ----------------------------------------------------------------------------- validation and dedup
def test_nan_rating_is_a_data_error_naming_the_column():
    inter = pd.DataFrame({"user": [1, 2], "item": [1, 2], "rating": [4.0, np.nan]})
    with pytest.raises(DataError, match=r"nanset: interactions\.rating has 1 NaN rating\(s\), first at row 1"):
        preprocess(RawFrames("nanset", inter), NOCORE)


def test_negative_and_non_integer_ids_are_data_errors():
    with pytest.raises(DataError, match=r"neg: interactions\.item has negative id -3 at row 1"):
        preprocess(RawFrames("neg", pd.DataFrame({"user": [1, 2], "item": [1, -3]})), NOCORE)
    with pytest.raises(DataError, match=r"frac: social\.friend has non-integer id 2\.5 at row 0"):
        preprocess(RawFrames("frac", pd.DataFrame({"user": [1, 2], "item": [1, 2]}),
                             social=pd.DataFrame({"user": [1], "friend": [2.5]})), NOCORE)
    with pytest.raises(DataError, match=r"miss: interactions\.user has a missing id at row 1"):
        preprocess(RawFrames("miss", pd.DataFrame({"user": ["a", None], "item": ["x", "y"]})), NOCORE)


def test_missing_columns_and_bad_options():
    with pytest.raises(DataError, match=r"cols: interactions lacks column\(s\) item"):
        preprocess(RawFrames("cols", pd.DataFrame({"user": [1], "itm": [1]})), NOCORE)
    raw = RawFrames("o", pd.DataFrame({"user": [1], "item": [1]}))
    with pytest.raises(ConfigError, match=r"preprocess\.ratios"):
        preprocess(raw, {"ratios": [0.5, 0.5, 0.5]})
    with pytest.raises(ConfigError, match=r"preprocess\.split: expected random or temporal, got 'time'"):
        preprocess(raw, {"split": "time"})
    with pytest.raises(DataError, match=r"o: preprocess\.split=temporal needs a timestamp column"):
        preprocess(raw, {"split": "temporal", **NOCORE})
    with pytest.raises(DataError, match=r"o: preprocess\.implicit_threshold=4 needs a rating column"):
        preprocess(raw, {"implicit_threshold": 4, **NOCORE})


def test_duplicates_keep_the_latest_row():
    # (1, 1): rated 5 at t=9 then 1 at t=3 (file order differs from time order) -> latest is 5
    # (2, 1): no order by time among equal timestamps -> the later row (rating 2) wins
    inter = pd.DataFrame({"user": [1, 1, 2, 2, 3], "item": [1, 1, 1, 1, 1],
                          "rating": [5, 1, 5, 2, 5], "timestamp": [9, 3, 4, 4, 1]})
    p = preprocess(RawFrames("d", inter), {"implicit_threshold": 4, **NOCORE})
    assert sorted(p.user_raw.tolist()) == ["1", "3"]
    assert p.stats["duplicates_removed"] == 2 and p.stats["raw_interactions"] == 5
    no_ts = inter.drop(columns="timestamp")  # file order: the last row of (1, 1) is rating 1
    p = preprocess(RawFrames("d", no_ts), {"implicit_threshold": 4, **NOCORE})
    assert sorted(p.user_raw.tolist()) == ["3"]


def test_implicit_threshold_keeps_only_high_ratings():
    inter = pd.DataFrame({"user": [1, 1, 1, 2], "item": [1, 2, 3, 1], "rating": [3.9, 4, 5, 1]})
    p = preprocess(RawFrames("i", inter), {"implicit_threshold": 4, **NOCORE})
    assert raw_pairs(p) == {("1", "2"), ("1", "3")}
    with pytest.raises(DataError, match=r"i: no interactions with rating >= implicit_threshold=6"):
        preprocess(RawFrames("i", inter), {"implicit_threshold": 6, **NOCORE})


# ----------------------------------------------------------------------------- splits
def test_split_count_rule_for_small_users():
    n = np.array([1, 2, 3, 4, 5, 10, 15, 20, 100])
    tr, va, te = split_counts(n, [0.8, 0.1, 0.1])
    assert tr.tolist() == [1, 1, 1, 2, 3, 8, 11, 16, 80]
    assert va.tolist() == [0, 1, 1, 1, 1, 1, 2, 2, 10]
    assert te.tolist() == [0, 0, 1, 1, 1, 1, 2, 2, 10]
    tr, va, te = split_counts(n, [0.9, 0.0, 0.1])
    assert va.tolist() == [0] * 9 and te.tolist() == [0, 1, 1, 1, 1, 1, 2, 2, 10]


@pytest.mark.parametrize("split", ["random", "temporal"])
def test_split_invariants(split):
    raw = random_raw(3, n=3000)
    p = preprocess(raw, {"user_core": 3, "item_core": 2, "split": split, "seed": 7})
    keys = [set((a * p.n_items + b).tolist()) for a, b in (p.train.T, p.valid.T, p.test.T)]
    assert not (keys[0] & keys[1]) and not (keys[0] & keys[2]) and not (keys[1] & keys[2])
    assert set(np.unique(p.train[:, 0])) == set(range(p.n_users))  # every kept user has train items
    n = p.n_interactions
    assert abs(len(p.train) / n - 0.8) < 0.05 and abs(len(p.test) / n - 0.1) < 0.04
    for arr in (p.train, p.valid, p.test):  # sorted by (user, item)
        key = arr[:, 0] * p.n_items + arr[:, 1]
        assert np.all(np.diff(key) > 0)
    again = preprocess(raw, {"user_core": 3, "item_core": 2, "split": split, "seed": 7})
    assert np.array_equal(again.test, p.test) and np.array_equal(again.valid, p.valid)
    # the split depends on the set of rows, not their order (compare de-duplicated data)
    dedup = raw.interactions.drop_duplicates(["user", "item"], keep="last")
    opts = {"user_core": 3, "item_core": 2, "split": split, "seed": 7}
    same = preprocess(RawFrames("r", dedup), opts)
    other = preprocess(RawFrames("r", dedup.sample(frac=1.0, random_state=2)), opts)
    assert np.array_equal(same.test, other.test) and np.array_equal(same.valid, other.valid)
    if split == "random":
        reseeded = preprocess(raw, {**opts, "seed": 8})
        assert not np.array_equal(reseeded.test, p.test)


def test_temporal_split_orders_each_user_by_time():
    rng = np.random.default_rng(5)
    n = 2000
    inter = pd.DataFrame({"user": rng.integers(0, 50, n), "item": rng.integers(0, 300, n),
                          "timestamp": rng.integers(0, 10**9, n)})
    inter = inter.drop_duplicates(["user", "item"])
    p = preprocess(RawFrames("t", inter), {"user_core": 3, "item_core": 1, "split": "temporal"})
    ts = {(int(u), int(i)): t for u, i, t in zip(inter["user"], inter["item"], inter["timestamp"])}

    def times(arr):
        out: dict[int, list] = {}
        for u, i in arr:
            out.setdefault(int(u), []).append(ts[(int(p.user_raw[u]), int(p.item_raw[i]))])
        return out

    tr, va, te = times(p.train), times(p.valid), times(p.test)
    assert len(te) == p.n_users
    for u in range(p.n_users):
        assert max(tr[u]) <= min(va.get(u, [np.inf])) and max(va.get(u, tr[u])) <= min(te[u])


def test_prepare_on_real_sized_data_is_fast():
    import time

    rng = np.random.default_rng(0)
    n = 500_000
    inter = pd.DataFrame({"user": rng.zipf(1.5, n) % 20_000, "item": rng.zipf(1.3, n) % 100_000,
                          "timestamp": rng.integers(0, 10**9, n)})
    t = time.perf_counter()
    p = preprocess(RawFrames("big", inter), {"user_core": 5, "item_core": 3, "split": "temporal"})
    assert time.perf_counter() - t < 5.0
    assert p.n_interactions > 10_000
