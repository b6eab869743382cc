"""The `amazon-hin` and `lastfm` sources on fixtures written in their real formats: what they
derive (co-views from shared view nodes, categories from brands or categories, categories from
tags), the invariants of the prepared relations, and their bad inputs through the command line."""

from __future__ import annotations

import contextlib
import hashlib
import io
from pathlib import Path

import numpy as np
import pytest

from pmtrec.cli import main
from pmtrec.config import load_config
from pmtrec.data import load_source, preprocess
from pmtrec.data.sources import SOURCES
from pmtrec.data.sources.amazon_hin import coview_pairs
from pmtrec.errors import ConfigError, DataError


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ----------------------------------------------------------------------------- fixtures
def user_item_rows() -> list[tuple[int, int, int, int]]:
    """12 users x 5 of items 0..7 (item 8 has one rating: the k-core drops it)."""
    rows = []
    for u in range(12):
        for k in range(5):
            rows.append((u, (u + 3 * k) % 8, 1 + (u + k) % 5, 1_000_000 + 100 * u + k))
    rows.append((0, 8, 5, 2_000_000))
    return rows


ITEM_VIEW = [(0, 100), (1, 100), (2, 100),  # view 100: items 0, 1, 2 -> 3 pairs
             (2, 101), (3, 101),            # view 101: 2-3
             (0, 102), (1, 102),            # view 102: 0-1 again (counted once)
             (4, 103),                      # a view of one item: no pair
             (5, 104), (8, 104)]            # 5-8: item 8 is dropped by the k-core
# categories: 0 is on every item (near-universal), 1 on most, 2 and 3 on a few, 9 on one item
ITEM_CATEGORY = ([(i, 0) for i in range(9)] + [(i, 1) for i in range(7)] + [(7, 2), (8, 2), (1, 3), (2, 3)]
                 + [(6, 9)])
ITEM_BRAND = [(0, 5), (1, 5), (2, 5), (3, 6), (4, 6), (5, 7), (6, 8), (7, 5), (8, 9)]


def write_amazon_hin(root: Path, **replace: str) -> dict[str, str]:
    d = root / "amazon-hin"
    d.mkdir(parents=True, exist_ok=True)
    texts = {
        "user_item.dat": "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in user_item_rows()),
        "item_view.dat": "".join(f"{i},{v}\n" for i, v in ITEM_VIEW),
        "item_category.dat": "".join(f"{i},{c}\n" for i, c in ITEM_CATEGORY),
        "item_brand.dat": "".join(f"{i},{b}\n" for i, b in ITEM_BRAND),
    }
    texts.update(replace)
    for name, text in texts.items():
        (d / name).write_text(text)
    return {name: sha(d / name) for name in texts}


LISTENS = [(u, a, 10 * (a + 1)) for u in range(2, 10) for a in (1, 2, 3, 4, 5, u + 4)]
FRIENDS = [(2, 3), (3, 2), (4, 5), (5, 4), (6, 6), (7, 99), (99, 7)]  # a self-link, a user with no listens
TAGS = {1: "rock", 2: "pop", 3: "electrónica", 4: "seen live", 5: "rare"}
# (user, artist, tag): tag 5 is on one artist only; artist 1 gets rock x3, pop x1; artist 2 pop x2,
# electrónica x2 (tie -> smaller id, pop); artist 3 electrónica; artist 4 only the rare tag
TAGGED = ([(u, 1, 1) for u in (2, 3, 4)] + [(5, 1, 2)] + [(2, 2, 2), (3, 2, 2), (2, 2, 3), (4, 2, 3)]
          + [(2, 3, 3), (5, 3, 4), (6, 3, 4), (7, 3, 4), (8, 3, 1)] + [(2, 4, 5)] + [(3, 5, 4), (4, 5, 2)])


def write_lastfm(root: Path, **replace: str) -> dict[str, str]:
    d = root / "lastfm"
    d.mkdir(parents=True, exist_ok=True)
    texts = {
        "user_artists.dat": "userID\tartistID\tweight\n" + "".join(f"{u}\t{a}\t{w}\n" for u, a, w in LISTENS),
        "user_friends.dat": "userID\tfriendID\n" + "".join(f"{u}\t{f}\n" for u, f in FRIENDS),
        "user_taggedartists.dat": "userID\tartistID\ttagID\tday\tmonth\tyear\n"
                                  + "".join(f"{u}\t{a}\t{t}\t1\t4\t2009\n" for u, a, t in TAGGED),
    }
    texts.update({k: v for k, v in replace.items() if k != "tags.dat"})
    for name, text in texts.items():
        (d / name).write_text(text)
    tags = replace.get("tags.dat", "tagID\ttagValue\n" + "".join(f"{k}\t{v}\n" for k, v in TAGS.items()))
    (d / "tags.dat").write_bytes(tags.encode("latin-1"))
    return {name: sha(d / name) for name in (*texts, "tags.dat")}


def cfg_for(source: str, root: Path, files: dict[str, str] | None, *extra: str) -> dict:
    cfg = load_config(overrides=[f"dataset.source={source}", f"dataset.mirror={root / 'mirror'}",
                                 f"dataset.cache={root / 'cache'}", f"dataset.{source}.url=null", *extra])
    if files is not None:
        cfg["dataset"][source]["files"] = files
    return cfg


def prep(raw):
    return preprocess(raw, {"user_core": 5, "item_core": 3, "seed": 0})


def assert_undirected_links(links: np.ndarray, n: int) -> None:
    """Both directions of each link, no self-link, no duplicate, ids of kept entities only."""
    pairs = set(map(tuple, links.tolist()))
    assert len(pairs) == len(links)
    assert all((b, a) in pairs for a, b in pairs)
    assert all(a != b for a, b in pairs)
    assert links.min() >= 0 and links.max() < n


# ----------------------------------------------------------------------------- amazon-hin
def test_sources_are_registered_with_their_files_and_relations():
    from pmtrec.data.sources import source_info

    assert {"amazon-hin", "lastfm"} <= set(SOURCES)
    assert source_info("amazon-hin").raw_files and source_info("lastfm").raw_files
    assert set(source_info("amazon-hin").relations) == {"category", "coview"}
    assert set(source_info("lastfm").relations) == {"social", "category"}


def test_coview_pairs_are_the_item_pairs_sharing_a_view_node():
    import pandas as pd

    iv = pd.DataFrame(ITEM_VIEW, columns=["item", "view"])
    assert coview_pairs(iv).values.tolist() == [[0, 1], [0, 2], [1, 2], [2, 3], [5, 8]]


def test_amazon_hin_reads_ratings_with_time_and_brands(tmp_path):
    files = write_amazon_hin(tmp_path / "mirror")
    raw = load_source(cfg_for("amazon-hin", tmp_path, files))
    inter = raw.interactions
    assert inter.columns.tolist() == ["user", "item", "rating", "timestamp"] and len(inter) == 61
    assert inter["rating"].dtype == np.float64 and inter["timestamp"].iloc[0] == 1_000_000
    # brands held by >= 2 items: 5 (items 0, 1, 2, 7) and 6 (items 3, 4); 7, 8 and 9 are singletons
    assert raw.item_category.values.tolist() == [[0, 5], [1, 5], [2, 5], [3, 6], [4, 6], [7, 5]]
    assert not (tmp_path / "cache").exists()  # read from the mirror, nothing copied


def test_amazon_hin_categories_without_the_near_universal_ones_are_multi_label(tmp_path):
    files = write_amazon_hin(tmp_path / "mirror")
    raw = load_source(cfg_for("amazon-hin", tmp_path, files, "dataset.amazon-hin.category=category"))
    # 0 (9 of 9 items) and 1 (7 of 9) are above the 0.5 share; 9 is on one item only
    assert raw.item_category.values.tolist() == [[1, 3], [2, 3], [7, 2], [8, 2]]
    raw = load_source(cfg_for("amazon-hin", tmp_path, files, "dataset.amazon-hin.category=category",
                              "dataset.amazon-hin.max_category_share=1.0", "dataset.amazon-hin.min_items=1"))
    labels = raw.item_category.groupby("item")["category"].apply(list).to_dict()
    assert labels[1] == [0, 1, 3] and labels[6] == [0, 1, 9] and len(raw.item_category) == len(ITEM_CATEGORY)


def test_amazon_hin_prepared_relations_keep_only_kept_items(tmp_path):
    files = write_amazon_hin(tmp_path / "mirror")
    p = prep(load_source(cfg_for("amazon-hin", tmp_path, files, "dataset.amazon-hin.category=category",
                                 "dataset.amazon-hin.max_category_share=1.0")))
    assert p.n_items == 8 and "8" not in set(p.item_raw)  # item 8 had one rating
    assert_undirected_links(p.coview, p.n_items)
    raw_pairs = {tuple(sorted((int(p.item_raw[a]), int(p.item_raw[b])))) for a, b in p.coview}
    assert raw_pairs == {(0, 1), (0, 2), (1, 2), (2, 3)}  # 5-8 went with item 8
    assert p.stats["coview_links"] == 4
    # multi-label: every kept item keeps all its categories; item 8's rows are gone
    assert p.stats["category_labels"] == len(p.item_category) == sum(1 for i, _ in ITEM_CATEGORY if i != 8) - 1
    assert p.stats["category_items"] == 8 and p.stats["category_labels"] > p.stats["category_items"]


def test_amazon_hin_files_must_list_every_file(tmp_path):
    files = write_amazon_hin(tmp_path / "mirror")
    del files["user_item.dat"], files["item_view.dat"]
    with pytest.raises(ConfigError, match=r"dataset\.amazon-hin\.files must list user_item\.dat, item_view\.dat"):
        load_source(cfg_for("amazon-hin", tmp_path, files))


def test_amazon_hin_bad_category_option_is_a_config_error(tmp_path):
    files = write_amazon_hin(tmp_path / "mirror")
    with pytest.raises(ConfigError, match=r"dataset\.amazon-hin\.category: expected one of brand, category, "
                                          r"got 'genre'"):
        load_source(cfg_for("amazon-hin", tmp_path, files, "dataset.amazon-hin.category=genre"))


# ----------------------------------------------------------------------------- lastfm
def test_lastfm_reads_listens_friends_and_most_given_tag(tmp_path):
    files = write_lastfm(tmp_path / "mirror")
    raw = load_source(cfg_for("lastfm", tmp_path, files, "dataset.lastfm.min_tag_artists=2"))
    assert raw.interactions.columns.tolist() == ["user", "item", "rating"] and len(raw.interactions) == 48
    assert raw.interactions["rating"].iloc[0] == 20.0  # the play count
    assert raw.social.values.tolist() == [list(f) for f in FRIENDS]
    # tag 5 is on one artist (< 2): artist 4 gets no category; ties go to the smaller tag id
    assert dict(zip(raw.item_category["item"], raw.item_category["category"])) == {
        1: "rock", 2: "pop", 3: "seen live", 5: "pop"}


def test_lastfm_tags_per_artist_makes_a_multi_label_relation(tmp_path):
    files = write_lastfm(tmp_path / "mirror")
    raw = load_source(cfg_for("lastfm", tmp_path, files, "dataset.lastfm.min_tag_artists=1",
                              "dataset.lastfm.tags_per_artist=2"))
    labels = raw.item_category.groupby("item", sort=True)["category"].apply(list).to_dict()
    assert labels == {1: ["rock", "pop"], 2: ["pop", "electrónica"], 3: ["seen live", "rock"], 4: ["rare"],
                      5: ["pop", "seen live"]}


def test_lastfm_prepared_social_links_are_undirected_between_kept_users(tmp_path):
    files = write_lastfm(tmp_path / "mirror")
    p = prep(load_source(cfg_for("lastfm", tmp_path, files)))
    assert_undirected_links(p.social, p.n_users)
    raw_pairs = {tuple(sorted((int(p.user_raw[a]), int(p.user_raw[b])))) for a, b in p.social}
    assert raw_pairs == {(2, 3), (4, 5)}  # the self-link and the link to unknown user 99 are gone
    assert p.stats["social_links"] == 2


# ----------------------------------------------------------------------------- bad inputs
def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def prepare_argv(root: Path, source: str, files: dict[str, str], *extra: str) -> list[str]:
    spec = "{" + ", ".join(f"{k}: {v if v == 'null' else repr(v)}" for k, v in files.items()) + "}"
    return ["prepare", "--set", f"dataset.source={source}", "--set", f"dataset.mirror={root / 'mirror'}",
            "--set", f"dataset.cache={root / 'cache'}", "--set", f"dataset.{source}.url=null",
            "--set", f"dataset.{source}.files={spec}", *extra, "--out", str(root / "prepared")]


@pytest.mark.parametrize("source, write", [("amazon-hin", write_amazon_hin), ("lastfm", write_lastfm)])
def test_prepare_prints_statistics(source, write, tmp_path):
    files = write(tmp_path / "mirror")
    rc, out, err = run_cli(prepare_argv(tmp_path, source, files))
    assert rc == 0, err
    assert f"prepared {source}" in out and "interactions" in out and "category_items" in out
    assert (tmp_path / "prepared" / "stats.json").is_file()


BAD = [
    ("amazon-hin", write_amazon_hin, {"user_item.dat": "0,1,5,100\n"}, None,
     ["user_item.dat: expected 4 tab-separated columns (user, item, rating, timestamp), found 1 on line 1"]),
    ("amazon-hin", write_amazon_hin, {"item_view.dat": "0,100\n1,x\n"}, None,
     ["item_view.dat: line 2: view must be an integer, got 'x'"]),
    ("amazon-hin", write_amazon_hin, {}, {"item_brand.dat": "0" * 64},
     ["item_brand.dat: SHA-256 mismatch: expected " + "0" * 64]),
    ("lastfm", write_lastfm, {"user_artists.dat": "user\tartist\tplays\n2\t1\t10\n"}, None,
     ["user_artists.dat: header must be 'userID\\tartistID\\tweight' (tab-separated); found 'user\\tartist\\tplays'"]),
    ("lastfm", write_lastfm, {"user_friends.dat": "userID\tfriendID\n2\t3\n3\t2.5\n"}, None,
     ["user_friends.dat: line 3: friend must be an integer, got '2.5'"]),
    ("lastfm", write_lastfm, {"tags.dat": "tagID\ttagValue\n1\trock\n"}, None,
     ["user_taggedartists.dat uses tagID 2, which tags.dat does not list"]),
    ("lastfm", write_lastfm, {}, {"tags.dat": "f" * 64}, ["tags.dat: SHA-256 mismatch: expected " + "f" * 64]),
]


@pytest.mark.parametrize("source, write, replace, files, words", BAD,
                         ids=[f"{c[0]}-{'-'.join(c[2]) or 'files'}" for c in BAD])
def test_prepare_bad_input_is_one_line_and_writes_nothing(source, write, replace, files, words, tmp_path):
    real = write(tmp_path / "mirror", **replace)
    if files is not None:
        real = {k: v for k, v in {**real, **files}.items() if v is not None}
    else:
        real = {k: "null" for k in real}
    rc, _, err = run_cli(prepare_argv(tmp_path, source, real, "--set", "dataset.lastfm.min_tag_artists=1"))
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("pmtrec: error: ")
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert not (tmp_path / "prepared").exists()


def test_missing_file_names_mirror_and_cache_when_no_url(tmp_path):
    files = write_lastfm(tmp_path / "mirror")
    (tmp_path / "mirror" / "lastfm" / "user_friends.dat").unlink()
    with pytest.raises(DataError, match=r"lastfm: user_friends\.dat not found in .*mirror/lastfm or .*cache/lastfm "
                                        r"and dataset\.lastfm\.url is not set"):
        load_source(cfg_for("lastfm", tmp_path, files))


def test_folder_url_downloads_each_file_into_the_cache_and_checks_it(tmp_path):
    files = write_amazon_hin(tmp_path / "published")
    url = (tmp_path / "published" / "amazon-hin").as_uri() + "/"
    cfg = cfg_for("amazon-hin", tmp_path, files, f"dataset.amazon-hin.url={url}")
    raw = load_source(cfg)
    assert len(raw.interactions) == 61
    assert sorted(p.name for p in (tmp_path / "cache" / "amazon-hin").iterdir()) == sorted(files)
    (tmp_path / "cache" / "amazon-hin" / "item_view.dat").write_text("9,9\n")  # corrupt: fetched again
    assert len(load_source(cfg).coview) == 5
    bad = {**files, "item_brand.dat": "0" * 64}
    (tmp_path / "cache" / "amazon-hin" / "item_brand.dat").unlink()
    with pytest.raises(DataError, match=r"item_brand\.dat: SHA-256 mismatch \(deleted\)"):
        load_source(cfg_for("amazon-hin", tmp_path, bad, f"dataset.amazon-hin.url={url}"))
    assert not (tmp_path / "cache" / "amazon-hin" / "item_brand.dat").exists()
