"""The real files of every source from the shared mirror (each skipped when its folder is absent)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from pmtrec.config import load_config
from pmtrec.data import load_source, prepare_dataset, read_prepared

MIRROR = (Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets").resolve()


def needs(folder: str, file: str):
    return pytest.mark.skipif(not (MIRROR / folder / file).is_file(),
                              reason=f"dataset mirror absent: no {MIRROR / folder / file}")


needs_ciao = needs("ciao", "rating.mat")
needs_epinions = needs("epinions", "rating.mat")


def cfg(source: str, tmp_path: Path, *extra: str) -> dict:
    return load_config(overrides=[f"dataset.source={source}", f"dataset.mirror={MIRROR}",
                                  f"dataset.cache={tmp_path / 'cache'}", *extra])


@needs_ciao
def test_ciao_raw_counts_match_the_mirror_readme(tmp_path):
    raw = load_source(cfg("ciao", tmp_path))
    inter = raw.interactions
    assert len(inter) == 284_086 and inter["user"].nunique() == 7_375 and inter["item"].nunique() == 105_114
    assert len(raw.social) == 111_781
    assert raw.item_category["item"].is_unique and raw.item_category["category"].between(1, 28).all()
    assert not (tmp_path / "cache").exists()  # the mirror was used, nothing was copied


@needs_ciao
def test_ciao_prepared_meets_the_core_and_round_trips(tmp_path):
    out = tmp_path / "ciao"
    p = prepare_dataset(cfg("ciao", tmp_path, "preprocess.user_core=5", "preprocess.item_core=3"), out,
                        stream=io.StringIO())
    pairs = np.concatenate([p.train, p.valid, p.test])
    assert np.bincount(pairs[:, 0]).min() >= 5 and np.bincount(pairs[:, 1]).min() >= 3
    assert p.stats["raw_interactions"] == 284_086 and p.stats["duplicates_removed"] == 1_436
    assert 6000 < p.n_users < 7375 and p.n_categories == 28 and p.stats["social_links"] > 50_000
    assert p.coview is None
    q = read_prepared(out)
    assert np.array_equal(q.test, p.test) and np.array_equal(q.social, p.social)


@needs_epinions
def test_epinions_raw_counts_match_the_mirror_readme(tmp_path):
    raw = load_source(cfg("epinions", tmp_path))
    assert len(raw.interactions) == 922_267 and raw.interactions["user"].nunique() == 22_164
    assert raw.interactions["item"].nunique() == 296_277 and len(raw.social) == 355_754


def assert_links(links: np.ndarray, n: int) -> None:
    """Undirected: both directions, no self-link, no duplicate, ids of kept entities only."""
    key = links[:, 0] * n + links[:, 1]
    assert len(np.unique(key)) == len(links) and (links[:, 0] != links[:, 1]).all()
    assert np.array_equal(np.sort(key), np.sort(links[:, 1] * n + links[:, 0]))
    assert links.min() >= 0 and links.max() < n


@needs("amazon-hin", "user_item.dat")
def test_amazon_hin_raw_counts_match_the_mirror_readme(tmp_path):
    raw = load_source(cfg("amazon-hin", tmp_path))
    inter = raw.interactions
    assert len(inter) == 195_791 and inter["user"].nunique() == 6_170 and inter["item"].nunique() == 2_753
    assert inter["rating"].between(1, 5).all() and inter["timestamp"].min() > 8e8
    items = set(raw.coview["item"]) | set(raw.coview["other"])
    assert len(raw.coview) == 2_646 and len(items) == 1_174  # the README's pairs over items
    assert (raw.coview["item"] < raw.coview["other"]).all()
    # brands held by >= 2 items: 98 brands over 2,517 items (one per item)
    assert raw.item_category["item"].is_unique and raw.item_category["category"].nunique() == 98
    assert len(raw.item_category) == 2_517
    multi = load_source(cfg("amazon-hin", tmp_path, "dataset.amazon-hin.category=category"))
    shares = multi.item_category.groupby("category")["item"].nunique() / 2_753
    assert shares.max() <= 0.5 and not multi.item_category["item"].is_unique  # near-universal ones gone
    assert not (tmp_path / "cache").exists()


@needs("amazon-hin", "user_item.dat")
def test_amazon_hin_prepared_temporal_split_and_coviews(tmp_path):
    p = prepare_dataset(cfg("amazon-hin", tmp_path, "preprocess.split=temporal"), tmp_path / "p", stream=None)
    assert p.n_users == 6_170 and p.stats["coview_links"] > 2_600 and p.social is None
    assert_links(p.coview, p.n_items)
    q = read_prepared(tmp_path / "p")
    assert np.array_equal(q.coview, p.coview) and np.array_equal(q.item_category, p.item_category)


@needs("lastfm", "user_artists.dat")
def test_lastfm_raw_counts_match_the_mirror_readme(tmp_path):
    raw = load_source(cfg("lastfm", tmp_path))
    inter = raw.interactions
    assert len(inter) == 92_834 and inter["user"].nunique() == 1_892 and inter["item"].nunique() == 17_632
    assert len(raw.social) == 25_434
    ic = raw.item_category
    assert ic["item"].is_unique and ic["category"].map(type).eq(str).all()
    assert {"rock", "pop", "electronic"} <= set(ic["category"])  # tag names, decoded from latin-1


@needs("lastfm", "user_artists.dat")
def test_lastfm_prepared_social_is_undirected_between_kept_users(tmp_path):
    p = prepare_dataset(cfg("lastfm", tmp_path), tmp_path / "p", stream=None)
    pairs = np.concatenate([p.train, p.valid, p.test])
    assert np.bincount(pairs[:, 0]).min() >= 5 and np.bincount(pairs[:, 1]).min() >= 3
    assert_links(p.social, p.n_users)
    assert p.stats["social_links"] <= 12_717 and p.stats["category_items"] <= p.n_items


@needs("amazon", "Magazine_Subscriptions_5.json.gz")
def test_amazon_2018_files_of_the_mirror(tmp_path):
    raw = load_source(cfg("amazon", tmp_path, "dataset.amazon.category=Magazine_Subscriptions"))
    inter = raw.interactions
    assert len(inter) == 2_375 and inter["user"].nunique() == 348 and inter["item"].nunique() == 157
    assert inter["rating"].between(1, 5).all() and "timestamp" in inter
    assert len(raw.coview) > 0 and len(raw.item_category) > 0
    assert not raw.item_category["category"].str.contains("&amp;").any()
    p = prepare_dataset(cfg("amazon", tmp_path, "dataset.amazon.category=Magazine_Subscriptions",
                            "preprocess.split=temporal"), tmp_path / "p", stream=None)
    assert p.n_users > 0 and p.coview is not None
    assert_links(p.coview, p.n_items)
