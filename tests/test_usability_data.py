"""Data errors a user meets on their own files, through `pmtrec prepare`: each is one line naming
the file (not the dataset's stem) and, where there is one, the row or line; the exit code is 2
and no output folder (nor a temporary sibling of it) is left behind. Also: category names
survive into the prepared folder's category_map."""

from __future__ import annotations

import contextlib
import gzip
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.io

from pmtrec.cli import main


def prepare(tmp_path: Path, *sets: str) -> tuple[int, str, Path]:
    out = tmp_path / "prepared"
    before = set(tmp_path.iterdir())
    argv = ["prepare", "--set", "preprocess.user_core=1", "--set", "preprocess.item_core=1"]
    for item in sets:
        argv += ["--set", item]
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        rc = main([*argv, "--out", str(out)])
    if rc != 0:  # nothing written: no folder, no temporary sibling
        assert set(tmp_path.iterdir()) == before
    return rc, err.getvalue(), out


def custom(tmp_path: Path, name: str, text: str | bytes, *sets: str) -> tuple[int, str, Path]:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return prepare(tmp_path, "dataset.source=custom", f"dataset.custom.interactions={path}", *sets)


def recbole(tmp_path: Path, files: dict[str, str], *sets: str) -> tuple[int, str, Path]:
    keys = []
    for key, text in files.items():
        (tmp_path / f"d.{key}").write_text(text)
        keys.append(f"dataset.recbole.{key}={tmp_path / f'd.{key}'}")
    return prepare(tmp_path, "dataset.source=recbole", *keys, *sets)


INTER = "user_id:token\titem_id:token\n"


# ---- custom CSV/TSV files ------------------------------------------------------------------------
CUSTOM_CASES = [
    ("header only: the file, not the stem 'header'", "header.csv", "user,item\n", (),
     "{p}: no data rows (only the header)"),
    ("an empty file", "empty.tsv", "", (),
     "{p}: file is empty (expected a header row: user,item[,rating][,timestamp])"),
    ("a comma-separated .tsv", "inter.tsv", "user,item,rating\na,x,5\n", (),
     "{p}: the header 'user,item,rating' is comma-separated but the name says tab-separated; "
     "rename the file to inter.csv"),
    ("a comma-separated .tab", "my.data.tab", "user,item\na,x\n", (),
     "{p}: the header 'user,item' is comma-separated but the name says tab-separated; "
     "rename the file to my.data.csv"),
    ("a timestamp that is no date", "t.csv", "user,item,timestamp\na,x,2021-03-04\nb,y,yesterday\n", (),
     "{p}: timestamp 'yesterday' at data row 2 is neither a number nor a date"),
    ("a number among dates", "t.csv", "user,item,timestamp\na,x,2021-03-04\nb,y,2021-03-05\nc,z,1614816000\n", (),
     "{p}: timestamp '1614816000' at data row 3 is a number among dates"),
    ("a date among numbers", "t.csv", "user,item,timestamp\na,x,1614816000\nb,y,1614816001\nc,z,2021-03-05\n", (),
     "{p}: timestamp '2021-03-05' at data row 3 is a date among numbers"),
    ("a missing timestamp", "t.tsv", "user\titem\ttimestamp\na\tx\t5\nb\ty\t\n", (),
     "{p}: missing timestamp at data row 2"),
    ("an empty rating: preprocessing names the file and its data row", "r.csv", "user,item,rating\na,x,5\nb,y,\n", (),
     "{p}: interactions.rating has 1 NaN rating(s), first at data row 2"),
    ("nothing left after the k-core: the file", "k.csv", "user,item\na,x\nb,y\n", ("preprocess.user_core=2",),
     "{p}: empty after filtering (user_core=2, item_core=1, 2 interactions before k-core)"),
    ("temporal split without timestamps: the file", "s.csv", "user,item\na,x\n", ("preprocess.split=temporal",),
     "{p}: preprocess.split=temporal needs a timestamp column; interactions have none"),
]


@pytest.mark.parametrize("what,name,text,sets,message", CUSTOM_CASES, ids=[c[0] for c in CUSTOM_CASES])
def test_custom_file_errors(tmp_path, what, name, text, sets, message):
    rc, err, out = custom(tmp_path, name, text, *sets)
    assert (rc, err) == (2, f"pmtrec: error: {message.format(p=tmp_path / name)}\n")
    assert not out.exists()


def test_a_compressed_comma_separated_tsv_is_told_its_csv_name(tmp_path):
    data = gzip.compress(b"user,item\na,x\n")
    rc, err, out = custom(tmp_path, "inter.tsv.gz", data)
    assert (rc, err) == (2, f"pmtrec: error: {tmp_path / 'inter.tsv.gz'}: the header 'user,item' is comma-separated "
                            "but the name says tab-separated; rename the file to inter.csv.gz\n")
    assert not out.exists()


def test_the_renamed_file_then_reads(tmp_path):
    rc, err, out = custom(tmp_path, "inter.csv", "user,item,rating\na,x,5\n")
    assert (rc, err) == (0, "") and out.is_dir()


# ---- RecBole atomic files ---------------------------------------------------------------------------
RECBOLE_CASES = [
    ("a comma-separated .inter", {"inter": "user_id:token,item_id:token\na,x\n"}, (),
     "{inter}: the header 'user_id:token,item_id:token' is comma-separated but RecBole atomic files are "
     "tab-separated; convert the file, or set dataset.recbole.field_separator: ','"),
    ("a header field without a type", {"inter": "user_id\titem_id:token\na\tx\n"}, (),
     "{inter}: header field 'user_id' must be name:type with type one of token, token_seq, float, float_seq"),
    ("a field of another name", {"inter": "uid:token\titem_id:token\na\tx\n"}, (),
     "{inter}: no field 'user_id' (fields: uid, item_id); set dataset.recbole.user_field"),
    ("header only", {"inter": INTER}, (), "{inter}: no data rows (only the header)"),
    ("an empty file", {"inter": ""}, (), "{inter}: file is empty (expected a header row of name:type fields)"),
    ("an empty id", {"inter": INTER + "a\tx\n\ty\n"}, (), "{inter}: empty user_id at line 3"),
    ("a bad timestamp: its line", {"inter": "user_id:token\titem_id:token\ttimestamp:float\na\tx\t1\nb\ty\tsoon\n"}, (),
     "{inter}: timestamp 'soon' at line 3 is neither a number nor a date"),
    ("a bad rating: its line", {"inter": "user_id:token\titem_id:token\trating:float\na\tx\t4\nb\ty\tfive\n"}, (),
     "{inter}: rating 'five' at line 3 is not a number"),
    ("a .item without a category field", {"inter": INTER + "a\tx\n", "item": "item_id:token\ttitle:token_seq\nx\tX\n"},
     (), "{item}: no category field (categories, category, class, genre, genres) among item_id, title; "
         "set dataset.recbole.category_field"),
    ("a float category field", {"inter": INTER + "a\tx\n", "item": "item_id:token\tprice:float\nx\t2.5\n"},
     ("dataset.recbole.category_field=price",), "{item}: category field 'price' is float, not token or token_seq"),
    ("a .net with other fields", {"inter": INTER + "a\tx\n", "net": "from:token\tto:token\na\tb\n"}, (),
     "{net}: no field 'source_id' (fields: from, to); set dataset.recbole.source_field"),
    ("preprocessing names the .inter", {"inter": INTER + "a\tx\nb\ty\n"}, ("preprocess.user_core=2",),
     "{inter}: empty after filtering (user_core=2, item_core=1, 2 interactions before k-core)"),
]


@pytest.mark.parametrize("what,files,sets,message", RECBOLE_CASES, ids=[c[0] for c in RECBOLE_CASES])
def test_recbole_file_errors(tmp_path, what, files, sets, message):
    rc, err, out = recbole(tmp_path, files, *sets)
    paths = {key: tmp_path / f"d.{key}" for key in ("inter", "item", "net")}
    assert (rc, err) == (2, f"pmtrec: error: {message.format(**paths)}\n")
    assert not out.exists()


def test_recbole_without_inter_is_one_line(tmp_path):
    rc, err, out = prepare(tmp_path, "dataset.source=recbole")
    assert (rc, err) == (2, "pmtrec: error: dataset.recbole.inter is not set (path to the dataset's .inter file)\n")
    assert not out.exists()


def test_recbole_missing_file_is_named(tmp_path):
    rc, err, out = prepare(tmp_path, "dataset.source=recbole", f"dataset.recbole.inter={tmp_path / 'no.inter'}")
    assert (rc, err) == (2, f"pmtrec: error: dataset.recbole.inter: file not found: {tmp_path / 'no.inter'}\n")
    assert not out.exists()


# ---- category names survive ---------------------------------------------------------------------------
def test_ciao_category_ids_get_their_names_from_category_txt(tmp_path):
    mirror = tmp_path / "mirror" / "ciao"
    mirror.mkdir(parents=True)
    # user, item, category, rating, helpfulness: items 10, 11, 12 in categories 2, 3, 9 (9 is unnamed)
    rows = np.array([[u, 10 + j, (2, 3, 9)[j], 4, 1] for u in (1, 2) for j in range(3)], dtype=np.int32)
    scipy.io.savemat(mirror / "rating.mat", {"rating": rows})
    scipy.io.savemat(mirror / "trustnetwork.mat", {"trustnetwork": np.array([[1, 2]], dtype=np.int32)})
    (mirror / "category.txt").write_bytes(b"1 DVDs\r\n2 Books\r\n3 Food & Drink\r\n10 Ciao Caf\xe9\r\n")
    files = "{rating.mat: null, trustnetwork.mat: null, category.txt: null}"
    rc, err, out = prepare(tmp_path, "dataset.source=ciao", f"dataset.mirror={tmp_path / 'mirror'}",
                           f"dataset.ciao.files={files}", "dataset.ciao.url=null")
    assert (rc, err) == (0, "")
    cmap = pd.read_parquet(out / "category_map.parquet")
    assert cmap["raw_id"].tolist() == ["Books", "Food & Drink", "#9"]  # ids keep their numeric order
    icat = pd.read_parquet(out / "item_category.parquet")
    imap = pd.read_parquet(out / "item_map.parquet")["raw_id"]
    assert {(imap[i], cmap["raw_id"][c]) for i, c in icat.values} == {("10", "Books"), ("11", "Food & Drink"),
                                                                       ("12", "#9")}


def test_a_malformed_category_txt_names_its_line(tmp_path):
    mirror = tmp_path / "mirror" / "ciao"
    mirror.mkdir(parents=True)
    scipy.io.savemat(mirror / "rating.mat", {"rating": np.array([[1, 10, 2, 4, 1]], dtype=np.int32)})
    scipy.io.savemat(mirror / "trustnetwork.mat", {"trustnetwork": np.array([[1, 2]], dtype=np.int32)})
    (mirror / "category.txt").write_text("1 DVDs\n\nBooks\n")
    files = "{rating.mat: null, trustnetwork.mat: null, category.txt: null}"
    rc, err, out = prepare(tmp_path, "dataset.source=ciao", f"dataset.mirror={tmp_path / 'mirror'}",
                           f"dataset.ciao.files={files}", "dataset.ciao.url=null")
    assert (rc, err) == (2, f"pmtrec: error: {mirror / 'category.txt'}: line 3 must be '<id> <name>', got 'Books'\n")
    assert not out.exists()


def test_custom_category_names_survive(tmp_path):
    (tmp_path / "inter.csv").write_text("user,item\na,x\na,y\nb,x\n")
    (tmp_path / "cats.tsv").write_text("item\tcategory\nx\tSci-Fi & Fantasy\ny\tDrama\n")
    rc, err, out = prepare(tmp_path, "dataset.source=custom", f"dataset.custom.interactions={tmp_path / 'inter.csv'}",
                           f"dataset.custom.item_category={tmp_path / 'cats.tsv'}")
    assert (rc, err) == (0, "")
    assert pd.read_parquet(out / "category_map.parquet")["raw_id"].tolist() == ["Drama", "Sci-Fi & Fantasy"]
