"""What the embeddings learn: saved tables, linear probes against their permutation baseline, maps."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pandas as pd
import pytest

from pmtrec.analysis.maps import item_map, map_items
from pmtrec.analysis.probes import category_probe, link_probe, probe_all, sample_non_links
from pmtrec.cli import main
from pmtrec.config import load_config
from pmtrec.data import prepare_in_memory, write_prepared
from pmtrec.embeddings import read_embeddings, write_embeddings
from pmtrec.errors import DataError
from pmtrec.train import train


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """synthetic tiny (planted categories and homophilous links), EW for 15 epochs, tables saved."""
    tmp = tmp_path_factory.mktemp("emb")
    cfg = load_config(overrides=["dataset.synthetic.size=tiny", "train.method=ew", "train.epochs=15", "train.lr=0.01",
                                 "train.batch_size=512", "train.progress=false", "train.threads=2"])
    data = prepare_in_memory(cfg)
    result = train(cfg, data, log=lambda *_: None, embeddings=tmp / "ew.emb.npz")
    (tmp / "ew.json").write_text(json.dumps(result, default=str))
    write_prepared(data, tmp / "data")
    return data, read_embeddings(tmp / "ew.emb.npz", result["embeddings"]["sha256"]), tmp


def mean(rows, probe, metric, baseline, group="all") -> float:
    df = pd.DataFrame(rows)
    sel = df[(df.probe == probe) & (df.metric == metric) & (df.baseline == baseline) & (df.group == group)]
    assert len(sel) == 5  # one value per fold
    return float(sel["value"].mean())


def test_saved_tables_are_the_models_and_their_hash_is_in_the_result(trained):
    data, emb, tmp = trained
    result = json.loads((tmp / "ew.json").read_text())
    entry = result["embeddings"]
    assert entry["file"] == "ew.emb.npz" and entry["dtype"] == "float16" and len(entry["sha256"]) == 64
    assert emb.user.shape == (data.n_users, 64) == (entry["users"], entry["dim"]) and emb.item.shape[0] == entry["items"]
    assert emb.user.dtype == np.float32 and np.isfinite(emb.user).all() and emb.user.std() > 0
    with pytest.raises(DataError, match=r"ew\.emb\.npz: SHA-256 mismatch: expected " + "0" * 64):
        read_embeddings(tmp / "ew.emb.npz", "0" * 64)
    (tmp / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"junk\.npz: unreadable embeddings file"):
        read_embeddings(tmp / "junk.npz")


def test_write_then_read_round_trips_at_float16(tmp_path):
    rng = np.random.default_rng(0)
    user, item = rng.normal(size=(7, 4)), rng.normal(size=(5, 4))
    entry = write_embeddings(tmp_path / "e.npz", user, item)
    emb = read_embeddings(tmp_path / "e.npz", entry["sha256"])
    np.testing.assert_allclose(emb.user, user, rtol=1e-3, atol=1e-3)
    assert np.array_equal(emb.item, item.astype(np.float16).astype(np.float32))
    assert not list(tmp_path.glob(".*tmp"))  # written via a temporary file, renamed


def test_category_probe_finds_planted_categories_and_not_in_random_embeddings(trained):
    data, emb, _ = trained
    rows = category_probe(emb.item, data.item_category, seed=0)
    acc, chance = mean(rows, "category", "accuracy", "embeddings"), mean(rows, "category", "accuracy", "permuted")
    assert acc > chance + 0.5 and chance < 0.2
    assert mean(rows, "category", "macro_f1", "embeddings") > 0.5
    random = np.random.default_rng(1).normal(size=emb.item.shape)
    rows = category_probe(random, data.item_category, seed=0)
    r_acc, r_chance = mean(rows, "category", "accuracy", "embeddings"), mean(rows, "category", "accuracy", "permuted")
    assert abs(r_acc - r_chance) < 0.06 and r_acc < 0.2


def test_link_probe_is_at_chance_on_random_embeddings_and_high_on_trained(trained):
    data, emb, _ = trained
    random = np.random.default_rng(2).normal(size=emb.user.shape)
    groups = np.arange(data.n_users) % 5
    rows = link_probe(random, data.social, groups, seed=0)
    assert abs(mean(rows, "link", "roc_auc", "embeddings") - 0.5) < 0.04
    assert abs(mean(rows, "link", "roc_auc", "permuted") - 0.5) < 0.04
    rows = link_probe(emb.user, data.social, groups, seed=0)
    assert mean(rows, "link", "roc_auc", "embeddings") > 0.8
    assert {r["group"] for r in rows} == {"all", "0", "1", "2", "3", "4"}  # per activity group of the colder user


def test_probe_all_covers_every_relation_and_is_deterministic(trained):
    data, emb, _ = trained
    a = probe_all(emb.user, emb.item, data, seed=3)
    b = probe_all(emb.user, emb.item, data, seed=3)
    pd.testing.assert_frame_equal(a, b)
    assert set(a["probe"]) == {"category", "link", "activity"} and set(a["baseline"]) == {"embeddings", "permuted"}
    recall = a[(a.probe == "activity") & (a.metric == "recall")]
    assert set(recall["group"]) == {"0", "1", "2", "3", "4"}
    with pytest.raises(Exception, match="belong to another dataset"):
        probe_all(emb.user[:-1], emb.item, data)


def test_non_links_are_distinct_pairs_outside_the_links():
    rng = np.random.default_rng(0)
    links = np.array([[0, 1], [1, 2], [2, 3], [0, 3]])
    non = sample_non_links(links, 6, 9, rng)
    keys = non[:, 0] * 6 + non[:, 1]
    assert len(non) == 9 and len(set(keys)) == 9 and (non[:, 0] < non[:, 1]).all()
    assert not set(keys) & set(links[:, 0] * 6 + links[:, 1])
    with pytest.raises(Exception, match="cannot sample 12 non-links"):
        sample_non_links(links, 6, 12, rng)


def test_maps_are_deterministic_for_a_seed_and_share_their_items(trained):
    data, emb, _ = trained
    items = map_items(data.item_category, data.n_items, size=150, seed=0)
    assert np.array_equal(items, map_items(data.item_category, data.n_items, size=150, seed=0)) and len(items) == 150
    a, b = item_map(emb.item, items, seed=0), item_map(emb.item, items, seed=0)
    pd.testing.assert_frame_equal(a, b)
    assert set(a["kind"]) == {"pca", "tsne"} and len(a) == 300 and np.isfinite(a[["x", "y"]]).all().all()
    other = item_map(np.random.default_rng(0).normal(size=emb.item.shape), items, seed=0)
    assert not np.allclose(other["x"], a["x"])


def run_cli(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def test_probe_and_map_commands(trained, tmp_path):
    _, _, tmp = trained
    rc, out, err = run_cli(["probe", "--result", str(tmp / "ew.json"), "--data", str(tmp / "data"),
                            "--out", str(tmp_path / "p.json")])
    assert rc == 0, err
    record = json.loads((tmp_path / "p.json").read_text())
    assert record["schema"] == "pmtrec.probes/1" and record["method"] == "ew" and "category accuracy" in out
    rc, out, err = run_cli(["embedding-map", "--result", str(tmp / "ew.json"), "--data", str(tmp / "data"),
                            "--items", "100", "--out", str(tmp_path / "m.csv")])
    assert rc == 0, err
    m = pd.read_csv(tmp_path / "m.csv")
    assert m.columns.tolist() == ["method", "kind", "item", "x", "y", "category"] and len(m) == 200
    assert m["category"].nunique() <= 9  # the 8 most frequent and "other"
    cfg = load_config(overrides=["dataset.synthetic.size=tiny", "train.method=mostpop"])
    (tmp_path / "mostpop.json").write_text(json.dumps(train(cfg, prepare_in_memory(cfg)), default=str))
    rc, _, err = run_cli(["probe", "--result", str(tmp_path / "mostpop.json"), "--data", str(tmp / "data"),
                          "--out", str(tmp_path / "q.json")])
    assert rc == 2 and err.strip() == (f"pmtrec: error: {tmp_path / 'mostpop.json'}: the run saved no embeddings "
                                       "(train with --embeddings FILE)")
    assert not (tmp_path / "q.json").exists()


def hand_probes() -> pd.DataFrame:
    """Two folds x three seeds: pmtrec clearly above single, within ew's interval; chance 0.1."""
    rows = []
    per_seed = {"pmtrec": [0.60, 0.62, 0.64], "ew": [0.55, 0.63, 0.70], "single": [0.40, 0.41, 0.42]}
    for m, values in per_seed.items():
        for seed, v in enumerate(values):
            for fold, d in enumerate((-0.01, 0.01)):
                rows.append({"dataset": "d", "method": m, "seed": seed, "probe": "category", "baseline": "embeddings",
                             "metric": "accuracy", "group": "all", "fold": fold, "value": v + d})
                rows.append({"dataset": "d", "method": m, "seed": seed, "probe": "category", "baseline": "permuted",
                             "metric": "accuracy", "group": "all", "fold": fold, "value": 0.1})
    return pd.DataFrame(rows)


def test_report_summary_interval_is_scipys_t_interval_and_the_reading_compares_intervals():
    from scipy import stats

    from pmtrec.report import embeddings

    summary = embeddings.summarise(embeddings.seed_means(hand_probes(), "d"))
    row = summary[(summary.method == "ew") & (summary.baseline == "embeddings")].iloc[0]
    lo, hi = stats.t.interval(0.95, 2, loc=np.mean([0.55, 0.63, 0.70]), scale=stats.sem([0.55, 0.63, 0.70]))
    assert row["mean"] == pytest.approx(0.6266666, abs=1e-6) and row["ci"] == pytest.approx((hi - lo) / 2)
    assert row["n"] == 3 and row["fold_std"] == pytest.approx(np.std([-0.01, 0.01], ddof=1))
    reading = embeddings.probe_reading(summary, "d")
    assert "PMTRec's 0.620 is within the intervals of EW's 0.627 and higher than Single-task's 0.410" in reading
    assert "chance 0.100" in reading
    table = embeddings.probe_table(summary, "d")
    assert table.columns == ["Method", "Category acc."] and table.rows[-1][0].text == "chance (permuted rows)"
    one = embeddings.summarise(embeddings.seed_means(hand_probes().query("seed == 0"), "d"))
    assert one["ci"].isna().all() and "no difference is established" in embeddings.probe_reading(one, "d")
