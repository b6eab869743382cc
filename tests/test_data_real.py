"""The real Ciao / Epinions files from the shared mirror (skipped when it is absent)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from pmtrec.config import load_config
from pmtrec.data import load_source, prepare_dataset, read_prepared

MIRROR = (Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets").resolve()
pytestmark = pytest.mark.skipif(not (MIRROR / "ciao" / "rating.mat").is_file(), reason="dataset mirror absent")


def cfg(source: str, tmp_path: Path, *extra: str) -> dict:
    return load_config(overrides=[f"dataset.source={source}", f"dataset.mirror={MIRROR}",
                                  f"dataset.cache={tmp_path / 'cache'}", *extra])


def test_ciao_raw_counts_match_the_mirror_readme(tmp_path):
    raw = load_source(cfg("ciao", tmp_path))
    inter = raw.interactions
    assert len(inter) == 284_086 and inter["user"].nunique() == 7_375 and inter["item"].nunique() == 105_114
    assert len(raw.social) == 111_781
    assert raw.item_category["item"].is_unique and raw.item_category["category"].between(1, 28).all()
    assert not (tmp_path / "cache").exists()  # the mirror was used, nothing was copied


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


def test_epinions_raw_counts_match_the_mirror_readme(tmp_path):
    raw = load_source(cfg("epinions", tmp_path))
    assert len(raw.interactions) == 922_267 and raw.interactions["user"].nunique() == 22_164
    assert raw.interactions["item"].nunique() == 296_277 and len(raw.social) == 355_754
