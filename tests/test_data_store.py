"""The prepared directory format: round trip, stats, and clear errors on damage."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from pmtrec.config import load_config
from pmtrec.data import dataset_stats, prepare_dataset, read_prepared, write_prepared
from pmtrec.data.store import read_meta
from pmtrec.errors import DataError


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("prep") / "tiny"
    buf = io.StringIO()
    cfg = load_config(overrides=["dataset.synthetic.size=tiny"])
    p = prepare_dataset(cfg, out, stream=buf)
    return p, out, buf.getvalue()


def test_prepare_dataset_writes_every_file_and_prints_a_table(tiny):
    p, out, printed = tiny
    assert sorted(f.name for f in out.iterdir()) == [
        "category_map.parquet", "coview.parquet", "interactions.parquet", "item_category.parquet",
        "item_map.parquet", "meta.json", "social.parquet", "stats.csv", "stats.json", "user_map.parquet"]
    assert "synthetic-tiny" in printed and f"{p.n_users:,}" in printed and "cold_users_frac" in printed
    meta = read_meta(out)
    assert (meta["format"], meta["version"], meta["n_users"]) == ("pmtrec-prepared", 1, p.n_users)
    assert meta["config"]["preprocess"]["user_core"] == 5 and len(meta["config_hash"]) == 16


def test_round_trip_is_exact(tiny):
    p, out, _ = tiny
    q = read_prepared(out)
    assert (q.name, q.n_users, q.n_items, q.n_categories) == (p.name, p.n_users, p.n_items, p.n_categories)
    for attr in ("train", "valid", "test", "social", "item_category", "coview"):
        a, b = getattr(p, attr), getattr(q, attr)
        assert b.dtype == np.int64 and np.array_equal(a, b), attr
    for attr in ("user_raw", "item_raw", "category_raw"):
        assert getattr(q, attr).tolist() == getattr(p, attr).tolist()
    assert q.stats == json.loads(json.dumps(p.stats))


def test_stats_files_match_dataset_stats(tiny):
    p, out, _ = tiny
    s = dataset_stats(p)
    assert set(s) == {"dataset", "users", "items", "interactions", "density", "train", "valid", "test",
                      "social_links", "categories", "category_items", "category_labels", "coview_links",
                      "avg_user_degree", "avg_item_degree", "cold_users_frac"}
    assert s["category_labels"] == len(p.item_category) >= s["category_items"] == len(set(p.item_category[:, 0]))
    assert s["interactions"] == s["train"] + s["valid"] + s["test"] == p.n_interactions
    assert s["social_links"] * 2 == len(p.social) and s["coview_links"] * 2 == len(p.coview)
    assert s["density"] == pytest.approx(s["interactions"] / (s["users"] * s["items"]))
    deg = np.bincount(p.train[:, 0], minlength=p.n_users)
    assert s["cold_users_frac"] == pytest.approx(np.mean(deg <= 5))
    assert all(type(v) in (int, float, str) for v in s.values())
    rows = list(csv.reader((out / "stats.csv").open()))
    assert len(rows) == 2 and dict(zip(*rows))["users"] == str(p.n_users)


def test_relations_absent_are_not_written(tmp_path):
    from pmtrec.data import RawFrames, preprocess
    import pandas as pd

    p = preprocess(RawFrames("bare", pd.DataFrame({"user": [1, 1, 2], "item": [1, 2, 1]})),
                   {"user_core": 1, "item_core": 1})
    write_prepared(p, tmp_path / "bare")
    assert not (tmp_path / "bare" / "social.parquet").exists()
    q = read_prepared(tmp_path / "bare")
    assert q.social is None and q.coview is None and q.item_category is None and q.category_raw.tolist() == []


def test_rewrite_replaces_the_directory_atomically(tiny, tmp_path):
    p, _, _ = tiny
    out = tmp_path / "d"
    write_prepared(p, out)
    (out / "stray.txt").write_text("old")
    write_prepared(p, out)
    assert not (out / "stray.txt").exists()
    assert [f.name for f in tmp_path.iterdir()] == ["d"]  # no temp dirs left


def test_missing_directory_and_meta(tmp_path):
    with pytest.raises(DataError, match=r"nothere: prepared dataset directory not found"):
        read_prepared(tmp_path / "nothere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty/meta\.json: missing"):
        read_prepared(tmp_path / "empty")


def test_missing_and_corrupt_files(tiny, tmp_path):
    p, _, _ = tiny
    out = tmp_path / "d"
    write_prepared(p, out)
    (out / "social.parquet").unlink()
    with pytest.raises(DataError, match=r"social\.parquet: missing from prepared dataset"):
        read_prepared(out)
    write_prepared(p, out)
    (out / "interactions.parquet").write_bytes(b"PAR1garbage")
    with pytest.raises(DataError, match=r"interactions\.parquet: SHA-256 differs from meta\.json"):
        read_prepared(out)
    with pytest.raises(DataError, match=r"interactions\.parquet: corrupt parquet file"):
        read_prepared(out, verify=False)
    write_prepared(p, out)
    (out / "meta.json").write_text("{")
    with pytest.raises(DataError, match=r"meta\.json: corrupt JSON"):
        read_prepared(out)


def test_future_format_version_is_rejected(tiny, tmp_path):
    p, _, _ = tiny
    out = tmp_path / "d"
    write_prepared(p, out)
    meta = json.loads((out / "meta.json").read_text())
    meta["version"] = 99
    (out / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match=r"meta\.json: format version 99 is not supported"):
        read_prepared(out)
