"""The ``recbole`` source: RecBole atomic files (.inter, .item, .net) in, RawFrames and a
prepared folder out. Fixtures are written here in RecBole's format (tab-separated, a header
row of name:type fields, token_seq values split on spaces)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pmtrec.config import load_config
from pmtrec.data import load_source, prepare_dataset, read_prepared
from pmtrec.data.sources import source_info
from pmtrec.errors import ConfigError

rng = np.random.default_rng(7)
N_USERS, N_ITEMS = 12, 9
GENRES = ["Action", "Comedy", "Drama", "Sci-Fi"]


def write(path: Path, header: list[str], rows: list[list]) -> Path:
    path.write_text("\t".join(header) + "\n" + "".join("\t".join(map(str, r)) + "\n" for r in rows))
    return path


@pytest.fixture()
def atomic(tmp_path):
    """A small RecBole dataset: every user rates 6 random items; items have 1-2 genres and a title."""
    inter = []
    for u in range(N_USERS):
        for i in rng.choice(N_ITEMS, 6, replace=False):
            inter.append([f"u{u}", f"i{i}", int(rng.integers(1, 6)), 900_000_000 + int(rng.integers(0, 10**6))])
    genres = {f"i{i}": sorted(set(rng.choice(GENRES, int(rng.integers(1, 3))))) for i in range(N_ITEMS)}
    links = [[f"u{a}", f"u{(a + 1) % N_USERS}"] for a in range(0, N_USERS, 2)]
    d = tmp_path / "ml"
    d.mkdir()
    write(d / "ml.inter", ["user_id:token", "item_id:token", "rating:float", "timestamp:float"], inter)
    write(d / "ml.item", ["item_id:token", "movie_title:token_seq", "class:token_seq", "studio:token"],
          [[i, f"The {i} Movie", " ".join(g), f"s{len(g)}"] for i, g in genres.items()])
    write(d / "ml.net", ["source_id:token", "target_id:token", "weight:float"], [[a, b, 1.0] for a, b in links])
    return {"dir": d, "inter": inter, "genres": genres, "links": links}


def cfg_for(d: Path, *sets: str, files=("inter", "item", "net"), stem: str = "ml") -> dict:
    paths = [f"dataset.recbole.{k}={d / f'{stem}.{k}'}" for k in files]
    return load_config(overrides=["dataset.source=recbole", *paths, *sets])


def test_reads_interactions_categories_and_links(atomic):
    raw = load_source(cfg_for(atomic["dir"]))
    assert raw.name == "ml"  # the .inter file's stem
    inter = raw.interactions
    assert inter.columns.tolist() == ["user", "item", "rating", "timestamp"]
    assert inter[["user", "item"]].values.tolist() == [r[:2] for r in atomic["inter"]]
    assert inter["rating"].dtype == np.float64 and inter["rating"].tolist() == [r[2] for r in atomic["inter"]]
    assert inter["timestamp"].dtype == np.int64 and inter["timestamp"].tolist() == [r[3] for r in atomic["inter"]]
    # the default category field is `class` (not the first token_seq field, the title), split on spaces
    expected = {(i, g) for i, gs in atomic["genres"].items() for g in gs}
    assert set(map(tuple, raw.item_category.values.tolist())) == expected and len(raw.item_category) == len(expected)
    assert raw.social.values.tolist() == atomic["links"]  # the .net's weight field is ignored
    assert raw.files == {"interactions": str(atomic["dir"] / "ml.inter"), "social": str(atomic["dir"] / "ml.net")}


def test_prepared_folder_keeps_the_category_names(atomic, tmp_path):
    cfg = cfg_for(atomic["dir"], "preprocess.user_core=1", "preprocess.item_core=1")
    prepare_dataset(cfg, tmp_path / "out", stream=None)
    p = read_prepared(tmp_path / "out")
    assert p.category_raw.tolist() == sorted({g for gs in atomic["genres"].values() for g in gs})
    got = {(p.item_raw[i], p.category_raw[c]) for i, c in p.item_category}
    kept = set(p.item_raw)
    assert got == {(i, g) for i, gs in atomic["genres"].items() if i in kept for g in gs}
    pairs = {(min(a, b), max(a, b)) for a, b in atomic["links"]}
    assert {(min(p.user_raw[a], p.user_raw[b]), max(p.user_raw[a], p.user_raw[b])) for a, b in p.social} == pairs
    # the map parquet itself holds the names
    assert pd.read_parquet(tmp_path / "out" / "category_map.parquet")["raw_id"].tolist() == p.category_raw.tolist()


def test_rating_threshold_and_temporal_split_are_preprocessings(atomic, tmp_path):
    cfg = cfg_for(atomic["dir"], "preprocess.user_core=1", "preprocess.item_core=1",
                  "preprocess.implicit_threshold=4", "preprocess.split=temporal")
    prepare_dataset(cfg, tmp_path / "out", stream=None)
    p = read_prepared(tmp_path / "out")
    positives = [r for r in atomic["inter"] if r[2] >= 4]
    assert p.n_interactions == len(positives)
    when = {(r[0], r[1]): r[3] for r in positives}
    checked = 0
    for user in range(p.n_users):  # each user's test items are their latest positives
        def times(split):
            return [when[(p.user_raw[user], p.item_raw[i])] for u, i in p.split(split) if u == user]
        if times("test"):
            assert min(times("test")) >= max(times("train") + times("valid"))
            checked += 1
    assert checked >= 3


def test_field_names_and_a_single_token_category_are_configurable(tmp_path):
    d = tmp_path / "fm"
    d.mkdir()
    write(d / "fm.inter", ["uid:token", "artist_id:token", "ts:float"],
          [["a", "x", "2021-03-04"], ["a", "y", "2021-03-05T12:00:00"], ["b", "x", "2021-04-01"]])
    write(d / "fm.item", ["artist_id:token", "class:token_seq", "tag:token"], [["x", "rock pop", "rock"], ["y", "", "jazz"]])
    cfg = cfg_for(d, "dataset.recbole.user_field=uid", "dataset.recbole.item_field=artist_id",
                  "dataset.recbole.time_field=ts", "dataset.recbole.category_field=tag", "dataset.recbole.name=lastfm",
                  files=("inter", "item"), stem="fm")
    raw = load_source(cfg)
    assert raw.name == "lastfm" and raw.social is None and "rating" not in raw.interactions
    assert raw.interactions["timestamp"].tolist() == [1614816000, 1614945600, 1617235200]  # dates -> Unix seconds
    assert raw.item_category.values.tolist() == [["x", "rock"], ["y", "jazz"]]


def test_an_empty_token_seq_leaves_the_item_without_a_category(tmp_path):
    d = tmp_path / "e"
    d.mkdir()
    write(d / "e.inter", ["user_id:token", "item_id:token"], [["a", "x"], ["a", "y"]])
    write(d / "e.item", ["item_id:token", "categories:token_seq"], [["x", "k1  k2"], ["y", ""]])
    raw = load_source(cfg_for(d, files=("inter", "item"), stem="e"))
    assert raw.item_category.values.tolist() == [["x", "k1"], ["x", "k2"]]


def test_a_comma_separated_file_reads_with_field_separator(tmp_path):
    (tmp_path / "c.inter").write_text("user_id:token,item_id:token\na,x\nb,y\n")
    raw = load_source(cfg_for(tmp_path, "dataset.recbole.field_separator=','", files=("inter",), stem="c"))
    assert raw.interactions.values.tolist() == [["a", "x"], ["b", "y"]]


def test_the_source_is_declared_for_the_workflow():
    info = source_info("recbole")
    assert info.raw_files and info.path_keys == ("inter", "item", "net") and info.required_keys == ("inter",)
    assert set(info.relations) == {"social", "category"}
    assert (info.relation_key("social"), info.relation_key("category"), info.relation_key("coview")) == \
        ("net", "item", None)


@pytest.mark.parametrize("key,value,message", [
    ("user_field", "''", "dataset.recbole.user_field: expected a non-empty string, got ''"),
    ("category_field", "3", "dataset.recbole.category_field: expected a field name or null, got 3"),
])
def test_bad_options_are_config_errors(tmp_path, key, value, message):
    write(tmp_path / "o.inter", ["user_id:token", "item_id:token"], [["a", "x"]])
    with pytest.raises(ConfigError) as exc:
        load_source(cfg_for(tmp_path, f"dataset.recbole.{key}={value}", files=("inter",), stem="o"))
    assert str(exc.value) == message
