"""Source parsers on small fixtures written in the real file formats."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.io

from pmtrec.config import load_config
from pmtrec.data import SOURCES, RawFrames, load_source
from pmtrec.data.sources.tang import item_majority_category
from pmtrec.errors import ConfigError, DataError


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# Ciao-like rows: user, item, category, rating, helpfulness
CIAO_ROWS = np.array([
    [1, 10, 3, 5, 1],
    [1, 11, 2, 4, 2],
    [2, 10, 3, 1, 1],
    [2, 12, 7, 3, 1],
    [3, 10, 4, 0, 1],  # item 10: categories 3, 3, 4 -> 3
    [3, 11, 5, 2, 1],  # item 11: categories 2, 5 -> tie -> 2
], dtype=np.int32)
TRUST_ROWS = np.array([[1, 2], [2, 3], [3, 1]], dtype=np.uint16)


def write_tang(root: Path, source: str, rating: np.ndarray, trust: np.ndarray,
               rating_var: str = "rating") -> dict[str, str]:
    d = root / source
    d.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(d / "rating.mat", {rating_var: rating})
    scipy.io.savemat(d / "trustnetwork.mat", {"trustnetwork": trust})
    (d / "category.txt").write_text("1 A\r\n2 B\r\n")
    return {name: sha(d / name) for name in ("rating.mat", "trustnetwork.mat", "category.txt")}


def tang_cfg(tmp_path: Path, source: str, files: dict[str, str], **extra) -> dict:
    cfg = load_config(overrides=[f"dataset.source={source}", f"dataset.mirror={tmp_path / 'mirror'}",
                                 f"dataset.cache={tmp_path / 'cache'}", f"dataset.{source}.url=null"])
    cfg["dataset"][source]["files"] = files
    cfg["dataset"].update(extra)
    return cfg


def test_registry_lists_the_builtin_sources():
    assert {"ciao", "epinions", "amazon", "synthetic", "custom"} <= set(SOURCES)


def test_unknown_source_is_a_config_error_naming_it():
    cfg = load_config(overrides=["dataset.source=nosuchsource"])
    with pytest.raises(ConfigError, match="nosuchsource"):
        load_source(cfg)


def test_module_colon_function_source_is_imported(tmp_path, monkeypatch):
    (tmp_path / "my_source_mod.py").write_text(
        "import pandas as pd\nfrom pmtrec.data.frames import RawFrames\n"
        "def load(cfg):\n    return RawFrames('mine', pd.DataFrame({'user': [1], 'item': [2]}))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = load_config(overrides=["dataset.source=my_source_mod:load"])
    raw = load_source(cfg)
    assert raw.name == "mine" and raw.interactions["item"].tolist() == [2]


def test_ciao_parser_reads_ratings_trust_and_majority_category(tmp_path):
    files = write_tang(tmp_path / "mirror", "ciao", CIAO_ROWS, TRUST_ROWS)
    raw = load_source(tang_cfg(tmp_path, "ciao", files))
    assert isinstance(raw, RawFrames) and raw.name == "ciao"
    assert raw.interactions.columns.tolist() == ["user", "item", "rating"]
    assert raw.interactions["user"].tolist() == [1, 1, 2, 2, 3, 3]
    assert raw.interactions["rating"].tolist() == [5, 4, 1, 3, 0, 2]
    cats = dict(zip(raw.item_category["item"], raw.item_category["category"]))
    assert cats == {10: 3, 11: 2, 12: 7}
    assert raw.social.values.tolist() == [[1, 2], [2, 3], [3, 1]]
    assert raw.social["user"].dtype == np.int64
    assert raw.coview is None


def test_epinions_parser_reads_four_column_ratings(tmp_path):
    files = write_tang(tmp_path / "mirror", "epinions", CIAO_ROWS[:, :4].astype(np.float64), TRUST_ROWS)
    raw = load_source(tang_cfg(tmp_path, "epinions", files))
    assert raw.name == "epinions"
    assert raw.interactions["item"].tolist() == [10, 11, 10, 12, 10, 11]
    assert raw.interactions["item"].dtype == np.int64


def test_majority_category_breaks_ties_by_smallest_id():
    out = item_majority_category(np.array([5, 5, 5, 5, 6]), np.array([9, 2, 9, 2, 1]))
    assert out.values.tolist() == [[5, 2], [6, 1]]


def test_wrong_matlab_variable_name_names_file_and_variable(tmp_path):
    files = write_tang(tmp_path / "mirror", "ciao", CIAO_ROWS, TRUST_ROWS, rating_var="ratings")
    with pytest.raises(DataError, match=r"rating\.mat: MATLAB variable 'rating' not found \(found: ratings\)"):
        load_source(tang_cfg(tmp_path, "ciao", files))


def test_non_matlab_file_is_a_data_error(tmp_path):
    files = write_tang(tmp_path / "mirror", "ciao", CIAO_ROWS, TRUST_ROWS)
    bad = tmp_path / "mirror" / "ciao" / "rating.mat"
    bad.write_text("user,item\n1,2\n")
    files["rating.mat"] = sha(bad)
    with pytest.raises(DataError, match=r"rating\.mat: not a readable MATLAB file"):
        load_source(tang_cfg(tmp_path, "ciao", files))


def test_truncated_matlab_file_is_a_data_error(tmp_path):
    rows = np.tile(CIAO_ROWS, (200, 1))
    files = write_tang(tmp_path / "mirror", "ciao", rows, TRUST_ROWS)
    path = tmp_path / "mirror" / "ciao" / "rating.mat"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    files["rating.mat"] = sha(path)
    with pytest.raises(DataError, match=r"rating\.mat: not a readable MATLAB file"):
        load_source(tang_cfg(tmp_path, "ciao", files))


def test_matlab_matrix_with_too_few_columns_is_a_data_error(tmp_path):
    files = write_tang(tmp_path / "mirror", "ciao", CIAO_ROWS[:, :3], TRUST_ROWS)
    with pytest.raises(DataError, match=r"rating\.mat: variable 'rating' must be a numeric matrix with >= 4"):
        load_source(tang_cfg(tmp_path, "ciao", files))


def test_non_integer_matlab_id_is_a_data_error(tmp_path):
    rows = CIAO_ROWS.astype(np.float64)
    rows[2, 1] = 10.5
    files = write_tang(tmp_path / "mirror", "ciao", rows, TRUST_ROWS)
    with pytest.raises(DataError, match=r"rating\.mat: rating column 2 \(item\) has non-integer id 10\.5 at row 3"):
        load_source(tang_cfg(tmp_path, "ciao", files))


def test_missing_file_without_url_names_the_file(tmp_path):
    files = write_tang(tmp_path / "mirror", "ciao", CIAO_ROWS, TRUST_ROWS)
    (tmp_path / "mirror" / "ciao" / "trustnetwork.mat").unlink()
    with pytest.raises(DataError, match=r"ciao: trustnetwork\.mat not found in .*dataset\.ciao\.url is not set"):
        load_source(tang_cfg(tmp_path, "ciao", files))


def test_mirror_from_environment_when_config_is_null(tmp_path, monkeypatch):
    files = write_tang(tmp_path / "envmirror", "ciao", CIAO_ROWS, TRUST_ROWS)
    cfg = tang_cfg(tmp_path, "ciao", files)
    cfg["dataset"]["mirror"] = None
    monkeypatch.setenv("PMTREC_MIRROR", str(tmp_path / "envmirror"))
    assert len(load_source(cfg).interactions) == 6


# ----------------------------------------------------------------------------- amazon
REVIEWS = [
    {"reviewerID": "A1", "asin": "0001", "overall": 5.0, "unixReviewTime": 1300000000, "reviewText": "x"},
    {"reviewerID": "A1", "asin": "0002", "overall": 3.0, "unixReviewTime": 1300000100},
    {"reviewerID": "A2", "asin": "0001", "overall": 4.0, "unixReviewTime": 1300000200},
]
META_2014 = [
    {"asin": "0001", "related": {"also_viewed": ["0002", "0009"], "also_bought": ["0003"]},
     "categories": [["Video Games", "PC", "Accessories"], ["Electronics"]]},
    {"asin": "0002", "categories": [["Video Games", "Xbox"]], "title": "It's \"fun\""},
]
META_2018 = [
    {"asin": "0001", "also_view": ["0002"], "category": ["Video Games", "PC"]},
    {"asin": "0002", "also_view": [], "category": ["Video Games", "Retro", "Consoles"]},
]


def write_amazon(tmp_path: Path, meta_lines: list[str], gz: bool = True) -> dict:
    rpath = tmp_path / ("reviews.json.gz" if gz else "reviews.json")
    text = "\n".join(json.dumps(r) for r in REVIEWS) + "\n"
    if gz:
        with gzip.open(rpath, "wt") as fh:
            fh.write(text)
    else:
        rpath.write_text(text)
    mpath = tmp_path / "meta.json.gz"
    with gzip.open(mpath, "wt") as fh:
        fh.write("\n".join(meta_lines) + "\n")
    cfg = load_config(overrides=["dataset.source=amazon"])
    cfg["dataset"]["amazon"].update(reviews=str(rpath), meta=str(mpath))
    return cfg


def test_amazon_2014_metadata_python_literals(tmp_path):
    cfg = write_amazon(tmp_path, [repr(m) for m in META_2014])
    raw = load_source(cfg)
    inter = raw.interactions
    assert inter["user"].tolist() == ["A1", "A1", "A2"]
    assert inter["item"].tolist() == ["0001", "0002", "0001"]  # leading zeros kept
    assert inter["rating"].tolist() == [5.0, 3.0, 4.0]
    assert inter["timestamp"].tolist() == [1300000000, 1300000100, 1300000200]
    assert raw.coview.values.tolist() == [["0001", "0002"], ["0001", "0009"]]
    assert dict(zip(raw.item_category["item"], raw.item_category["category"])) == {
        "0001": "Accessories", "0002": "Xbox"}


def test_amazon_2018_metadata_json_and_plain_reviews(tmp_path):
    cfg = write_amazon(tmp_path, [json.dumps(m) for m in META_2018], gz=False)
    raw = load_source(cfg)
    assert raw.coview.values.tolist() == [["0001", "0002"]]
    assert dict(zip(raw.item_category["item"], raw.item_category["category"])) == {
        "0001": "PC", "0002": "Consoles"}


def test_amazon_2018_file_names_in_the_mirror_also_buy_and_html_entities(tmp_path):
    """2018 names (<category>_5.json.gz, meta_<category>.json.gz) are found in the mirror; also_buy
    adds co-view links when asked; '&amp;' in a category path is decoded."""
    d = tmp_path / "mirror" / "amazon"
    d.mkdir(parents=True)
    with gzip.open(d / "Books_5.json.gz", "wt") as fh:
        fh.write("\n".join(json.dumps(r) for r in REVIEWS) + "\n")
    meta = [{"asin": "0001", "also_view": ["0002"], "also_buy": ["0003", "0002"],
             "category": ["Books", "Arts, Music &amp; Photography"]},
            {"asin": "0002", "also_view": [], "category": []}]
    with gzip.open(d / "meta_Books.json.gz", "wt") as fh:
        fh.write("\n".join(json.dumps(m) for m in meta) + "\n")
    base = ["dataset.source=amazon", "dataset.amazon.category=Books", f"dataset.mirror={tmp_path / 'mirror'}",
            f"dataset.cache={tmp_path / 'cache'}"]
    raw = load_source(load_config(overrides=base))
    assert raw.name == "amazon-Books" and len(raw.interactions) == 3
    assert raw.coview.values.tolist() == [["0001", "0002"]]
    assert raw.item_category.values.tolist() == [["0001", "Arts, Music & Photography"]]  # 0002: no category
    raw = load_source(load_config(overrides=[*base, "dataset.amazon.coview=[also_view, also_buy]"]))
    assert raw.coview.values.tolist() == [["0001", "0002"], ["0001", "0003"], ["0001", "0002"]]
    with pytest.raises(ConfigError, match=r"dataset\.amazon\.coview: expected a list of also_view, also_buy, "
                                          r"got \['also_seen'\]"):
        load_source(load_config(overrides=[*base, "dataset.amazon.coview=[also_seen]"]))
    (d / "Books_5.json.gz").unlink()
    with pytest.raises(DataError, match=r"dataset\.amazon\.reviews is not set and reviews_Books_5\.json\.gz / "
                                        r"Books_5\.json\.gz is not in .*mirror/amazon or .*cache/amazon"):
        load_source(load_config(overrides=base))


def test_amazon_review_without_asin_names_file_and_line(tmp_path):
    cfg = write_amazon(tmp_path, [repr(m) for m in META_2014], gz=False)
    path = Path(cfg["dataset"]["amazon"]["reviews"])
    path.write_text(path.read_text() + json.dumps({"reviewerID": "A3", "overall": 1}) + "\n")
    with pytest.raises(DataError, match=r"reviews\.json: line 4 lacks key 'asin'"):
        load_source(cfg)


def test_amazon_garbage_meta_line_is_a_data_error(tmp_path):
    cfg = write_amazon(tmp_path, [repr(META_2014[0]), "{not python"])
    with pytest.raises(DataError, match=r"meta\.json\.gz: line 2 is neither JSON nor a Python literal"):
        load_source(cfg)


def test_amazon_missing_reviews_path_is_a_data_error(tmp_path):
    cfg = load_config(overrides=["dataset.source=amazon", f"dataset.amazon.reviews={tmp_path / 'nope.json'}"])
    with pytest.raises(DataError, match=r"dataset\.amazon\.reviews: file not found: .*nope\.json"):
        load_source(cfg)


# ----------------------------------------------------------------------------- custom
def custom_cfg(**paths) -> dict:
    cfg = load_config(overrides=["dataset.source=custom"])
    cfg["dataset"]["custom"].update({k: str(v) for k, v in paths.items()})
    return cfg


def test_custom_csv_and_tsv_with_side_files(tmp_path):
    (tmp_path / "inter.csv").write_text("user,item,rating,timestamp\n007,a,5,2020-01-01\n7,b,3,2020-01-02T10:00:00\n")
    (tmp_path / "social.tsv").write_text("user\tfriend\n007\t7\n")
    (tmp_path / "cats.tsv.gz").write_bytes(gzip.compress(b"item\tcategory\na\tbooks\nb\ttoys\n"))
    raw = load_source(custom_cfg(interactions=tmp_path / "inter.csv", social=tmp_path / "social.tsv",
                                 item_category=tmp_path / "cats.tsv.gz"))
    assert raw.name == "inter"
    assert raw.interactions["user"].tolist() == ["007", "7"]
    assert raw.interactions["rating"].tolist() == [5.0, 3.0]
    assert raw.interactions["timestamp"].tolist() == [1577836800, 1577959200]
    assert raw.social.values.tolist() == [["007", "7"]]
    assert raw.item_category.values.tolist() == [["a", "books"], ["b", "toys"]]
    assert raw.coview is None


def test_custom_wrong_columns_names_file_and_expected_columns(tmp_path):
    (tmp_path / "inter.csv").write_text("user_id,item\n1,2\n")
    with pytest.raises(DataError, match=r"inter\.csv: interactions columns must be user,item\[,rating\]\[,timestamp\]; "
                                        r"found user_id,item"):
        load_source(custom_cfg(interactions=tmp_path / "inter.csv"))


def test_custom_tsv_read_as_csv_is_caught_by_column_check(tmp_path):
    (tmp_path / "social.csv").write_text("user\tfriend\n1\t2\n")
    (tmp_path / "inter.csv").write_text("user,item\n1,2\n")
    with pytest.raises(DataError, match=r"social\.csv: social columns must be user,friend"):
        load_source(custom_cfg(interactions=tmp_path / "inter.csv", social=tmp_path / "social.csv"))


def test_custom_unknown_extension_and_missing_file(tmp_path):
    (tmp_path / "inter.txt").write_text("user,item\n1,2\n")
    with pytest.raises(DataError, match=r"inter\.txt: unknown extension"):
        load_source(custom_cfg(interactions=tmp_path / "inter.txt"))
    with pytest.raises(DataError, match=r"dataset\.custom\.interactions: file not found: .*absent\.csv"):
        load_source(custom_cfg(interactions=tmp_path / "absent.csv"))
    with pytest.raises(DataError, match=r"dataset\.custom\.interactions is not set"):
        load_source(custom_cfg())


def test_custom_empty_id_and_bad_rating_are_data_errors(tmp_path):
    (tmp_path / "a.csv").write_text("user,item\n1,2\n,3\n")
    with pytest.raises(DataError, match=r"a\.csv: empty user id at data row 2"):
        load_source(custom_cfg(interactions=tmp_path / "a.csv"))
    (tmp_path / "b.csv").write_text("user,item,rating\n1,2,good\n")
    with pytest.raises(DataError, match=r"b\.csv: non-numeric rating 'good' at data row 1"):
        load_source(custom_cfg(interactions=tmp_path / "b.csv"))


def test_custom_frames_preprocess_end_to_end(tmp_path):
    from pmtrec.data import preprocess

    rows = [(f"u{u}", f"i{(u + k) % 6}") for u in range(6) for k in range(4)]
    pd.DataFrame(rows, columns=["user", "item"]).to_csv(tmp_path / "x.tsv", sep="\t", index=False)
    raw = load_source(custom_cfg(interactions=tmp_path / "x.tsv", name="mine"))
    p = preprocess(raw, {"user_core": 4, "item_core": 4})
    assert (p.name, p.n_users, p.n_items, p.n_interactions) == ("mine", 6, 6, 24)
    assert p.user_raw.tolist() == [f"u{u}" for u in range(6)]
