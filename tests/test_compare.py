"""`pmtrec compare`: a rerun's summary.csv against a reference's, each mean within the reference's t interval."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pmtrec.aggregate import write_tables
from pmtrec.cli import main
from pmtrec.errors import ConfigError, PmtrecError
from pmtrec.study.compare import KEYS, OUTPUT, compare_tables, read_summary
from pmtrec.study.statistics import summary_table

ATOL = 1e-6


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(argv))
    return rc, out.getvalue(), err.getvalue()


def _runs() -> pd.DataFrame:
    """runs.csv's shape: 2 datasets x 2 methods x 2 splits x 3 metrics over 5 seeds, an ablation
    variant and a tuning setting, and one sensitivity run with a single seed (n = 1, no std)."""
    rng = np.random.default_rng(0)
    rows = []
    for dataset in ("ciao", "epinions"):
        for kind, method, variant in (("main", "pmtrec", ""), ("main", "ew", ""), ("ablation", "pmtrec-no-focus", ""),
                                      ("tune", "pmtrec", "tau=1.0")):
            for seed in range(5):
                for split in ("valid", "test"):
                    for metric in ("recall@20", "ndcg@20", "hit@10"):
                        rows.append((kind, dataset, method, variant, seed, split, metric, rng.uniform(0.02, 0.2)))
    for split in ("valid", "test"):
        for metric in ("recall@20", "ndcg@20", "hit@10"):
            rows.append(("sensitivity", "ciao", "pmtrec", "dim=128", 0, split, metric, rng.uniform(0.02, 0.2)))
    return pd.DataFrame(rows, columns=["kind", "dataset", "method", "variant", "seed", "split", "metric", "value"])


@pytest.fixture
def summary() -> pd.DataFrame:
    return summary_table(_runs())


def _write(folder, summary: pd.DataFrame, layout: str = "tables"):
    """A tables folder (``folder/summary.csv``) or a results folder (``folder/tables/summary.csv``),
    written as the aggregate rule writes it."""
    write_tables({"summary": summary}, folder if layout == "tables" else folder / "tables")
    return folder


def _half_width(row) -> float:
    return stats.t.ppf(0.975, row["n"] - 1) * row["std"] / np.sqrt(row["n"])


def _row(summary, **key) -> int:
    mask = np.logical_and.reduce([summary[k] == v for k, v in key.items()])
    assert mask.sum() == 1
    return int(np.flatnonzero(mask)[0])


TARGET = dict(kind="main", dataset="epinions", method="ew", split="test", metric="ndcg@20")


def test_the_fixture_is_the_real_format(tmp_path, summary):
    text = (_write(tmp_path, summary) / "summary.csv").read_text().splitlines()
    assert text[0] == "kind,dataset,method,variant,split,metric,mean,std,n"
    assert any(line.startswith("main,ciao,pmtrec,,") for line in text)  # a main run's empty variant
    single = read_summary(tmp_path)
    single = single[single["kind"] == "sensitivity"]
    assert (single["n"] == 1).all() and single["std"].isna().all() and (single["variant"] == "dim=128").all()


@pytest.mark.parametrize("layout", ["tables", "results"])
def test_the_reference_against_itself_passes_in_either_layout(tmp_path, summary, layout):
    ref = _write(tmp_path / "ref", summary, layout)
    new = _write(tmp_path / "new", summary, "results" if layout == "tables" else "tables")
    out = tmp_path / "cmp" / "compare.csv"
    rc, stdout, err = cli("compare", str(ref), str(new), "--out", str(out))
    assert rc == 0, err
    table = pd.read_csv(out, keep_default_na=False)
    assert list(table.columns) == OUTPUT
    # the defaults: test split, ndcg@20 and recall@20, every kind (2 x 4 x 2 five-seed rows + 2 single-seed rows)
    assert len(table) == 2 * 4 * 2 + 2 and set(table["status"]) == {"ok"}
    assert set(table["metric"]) == {"ndcg@20", "recall@20"} and set(table["split"]) == {"test"}
    assert stdout.strip() == f"compare: 18 of 18 rows within the reference's 95% intervals -> {out}"
    assert not list(out.parent.glob(".*.tmp"))  # written through a temporary file, renamed


def test_the_interval_is_the_t_interval_and_a_mean_just_outside_fails(tmp_path, summary):
    ref = summary.iloc[_row(summary, variant="", **TARGET)]
    half = _half_width(ref)
    assert half > 10 * ATOL  # a real interval, not the tolerance
    moved = summary.copy()
    moved.loc[_row(summary, variant="", **TARGET), "mean"] = ref["mean"] + half + 2 * ATOL
    _write(tmp_path / "ref", summary), _write(tmp_path / "new", moved)

    table = compare_tables(tmp_path / "ref", tmp_path / "new")
    hit = table[(table[list(TARGET)] == pd.Series(TARGET)).all(axis=1)].iloc[0]
    assert hit["status"] == "outside"
    assert hit["ref_low"] == pytest.approx(ref["mean"] - half, abs=1e-12)
    assert hit["ref_high"] == pytest.approx(ref["mean"] + half, abs=1e-12)
    assert (hit["ref_mean"], hit["ref_n"], hit["new_n"]) == (pytest.approx(ref["mean"]), 5, 5)
    assert (table["status"] == "ok").sum() == len(table) - 1

    rc, stdout, err = cli("compare", str(tmp_path / "ref"), str(tmp_path / "new"))
    assert rc == 3 and err == ""
    lines = stdout.strip().splitlines()
    assert lines[-1] == "compare: 17 of 18 rows within the reference's 95% intervals, 1 outside"
    assert len(lines) == 3 and "epinions" in lines[1] and "outside" in lines[1]  # header + the failing row
    rc, stdout, _ = cli("compare", str(tmp_path / "ref"), str(tmp_path / "new"), "-q")
    assert rc == 3 and stdout.count("\n") == 1  # -q: the summary line only


def test_a_mean_just_inside_and_the_other_side_and_a_wider_level(tmp_path, summary):
    i = _row(summary, variant="", **TARGET)
    half = _half_width(summary.iloc[i])
    _write(tmp_path / "ref", summary)
    for shift, status in ((half + ATOL / 2, "ok"), (half - 1e-9, "ok"), (-half - ATOL / 2, "ok"),
                          (-half - 2 * ATOL, "outside")):
        moved = summary.copy()
        moved.loc[i, "mean"] += shift
        _write(tmp_path / "new", moved)
        table = compare_tables(tmp_path / "ref", tmp_path / "new")
        assert table.loc[table["status"] != "ok", KEYS].to_dict("records") == (
            [] if status == "ok" else [{**TARGET, "variant": ""}]), shift
    # outside the 95% interval, inside the 99% one: t_{0.995, 4} is larger
    moved = summary.copy()
    moved.loc[i, "mean"] += half * 1.2
    _write(tmp_path / "new", moved)
    assert cli("compare", str(tmp_path / "ref"), str(tmp_path / "new"))[0] == 3
    rc, stdout, _ = cli("compare", str(tmp_path / "ref"), str(tmp_path / "new"), "--level", "0.99")
    assert rc == 0 and "within the reference's 99% intervals" in stdout
    assert stats.t.ppf(0.995, 4) / stats.t.ppf(0.975, 4) > 1.2


def test_a_single_seed_row_compares_within_atol(tmp_path, summary):
    i = _row(summary, kind="sensitivity", split="test", metric="recall@20")
    _write(tmp_path / "ref", summary)
    for shift, status in ((ATOL / 2, "ok"), (-ATOL / 2, "ok"), (2 * ATOL, "outside")):
        moved = summary.copy()
        moved.loc[i, "mean"] += shift
        _write(tmp_path / "new", moved)
        table = compare_tables(tmp_path / "ref", tmp_path / "new", kinds=["sensitivity"])
        row = table[table["metric"] == "recall@20"].iloc[0]
        assert row["status"] == status and row["ref_low"] == row["ref_high"] == pytest.approx(row["ref_mean"])
    # a looser --atol accepts the same rerun
    rc, _, err = cli("compare", str(tmp_path / "ref"), str(tmp_path / "new"), "--atol", "1e-5")
    assert rc == 0, err


def test_a_zero_std_row_compares_within_atol(tmp_path, summary):
    i = _row(summary, variant="", **TARGET)
    summary.loc[i, "std"] = 0.0  # a deterministic study: every seed the same value
    moved = summary.copy()
    moved.loc[i, "mean"] += 2 * ATOL
    _write(tmp_path / "ref", summary), _write(tmp_path / "new", moved)
    assert set(compare_tables(tmp_path / "ref", tmp_path / "new")["status"]) == {"ok", "outside"}
    assert set(compare_tables(tmp_path / "ref", tmp_path / "new", atol=3 * ATOL)["status"]) == {"ok"}


def test_a_deleted_row_is_missing_and_an_added_row_is_extra(tmp_path, summary):
    deleted = summary.drop(index=_row(summary, variant="", **TARGET))
    _write(tmp_path / "ref", summary), _write(tmp_path / "new", deleted)
    out = tmp_path / "compare.csv"
    rc, stdout, _ = cli("compare", str(tmp_path / "ref"), str(tmp_path / "new"), "--out", str(out))
    assert rc == 3 and "17 of 18 rows within the reference's 95% intervals, 1 missing" in stdout
    table = pd.read_csv(out, keep_default_na=False)
    missing = table[table["status"] == "missing"]
    assert missing[KEYS].to_dict("records") == [{**TARGET, "variant": ""}]
    assert missing["new_mean"].tolist() == [""] and missing["new_n"].tolist() == [""]

    added = pd.concat([summary, summary.iloc[[0]].assign(method="lightgcn")], ignore_index=True)
    _write(tmp_path / "new", added)
    rc, stdout, _ = cli("compare", str(tmp_path / "ref"), str(tmp_path / "new"), "--out", str(out))
    assert rc == 0  # an extra row alone does not fail it
    assert "18 of 18 rows" in stdout and "1 extra row only in the new tables" in stdout
    table = pd.read_csv(out, keep_default_na=False)
    extra = table[table["status"] == "extra"]
    assert extra["method"].tolist() == ["lightgcn"] and extra["ref_mean"].tolist() == [""]
    assert table["status"].tolist()[-1] == "extra"  # after the reference's rows, which keep their order


def test_extra_rows_outside_the_filters_are_not_listed(tmp_path, summary):
    added = pd.concat([summary, summary.iloc[[0]].assign(method="lightgcn", split="valid")], ignore_index=True)
    _write(tmp_path / "ref", summary), _write(tmp_path / "new", added)
    assert set(compare_tables(tmp_path / "ref", tmp_path / "new")["status"]) == {"ok"}
    assert "extra" in set(compare_tables(tmp_path / "ref", tmp_path / "new", splits=["valid"])["status"])


def test_the_metric_split_and_kind_filters(tmp_path, summary):
    moved = summary.copy()
    moved.loc[_row(summary, variant="", **TARGET), "mean"] += 1.0  # fails ndcg@20 test main only
    _write(tmp_path / "ref", summary), _write(tmp_path / "new", moved)
    ref, new = str(tmp_path / "ref"), str(tmp_path / "new")

    table = compare_tables(ref, new, metrics=["hit@10"], splits=["valid", "test"], kinds=["main", "tune"])
    assert set(table["metric"]) == {"hit@10"} and set(table["split"]) == {"valid", "test"}
    assert set(table["kind"]) == {"main", "tune"} and len(table) == 2 * 3 * 2 and set(table["status"]) == {"ok"}
    assert len(compare_tables(ref, new, metrics=None, splits=None)) == len(summary)  # None: everything

    assert cli("compare", ref, new, "--metrics", "recall@20")[0] == 0
    assert cli("compare", ref, new, "--splits", "valid")[0] == 0
    assert cli("compare", ref, new, "--kinds", "ablation", "tune", "sensitivity")[0] == 0
    rc, stdout, _ = cli("compare", ref, new, "--kinds", "main", "--metrics", "ndcg@20", "hit@10")
    assert rc == 3 and "compare: 7 of 8 rows" in stdout


def test_a_filter_value_the_reference_lacks_is_an_error(tmp_path, summary):
    _write(tmp_path / "ref", summary)
    with pytest.raises(ConfigError, match=r"^metric ndcg@02: not in .*summary.csv \(it has: hit@10, ndcg@20"):
        compare_tables(tmp_path / "ref", tmp_path / "ref", metrics=["ndcg@02"])
    rc, stdout, err = cli("compare", str(tmp_path / "ref"), str(tmp_path / "ref"), "--kinds", "mian")
    assert rc == 2 and stdout == "" and err.count("\n") == 1 and err.startswith("pmtrec: error: kind mian: not in")


def test_a_missing_summary_is_a_one_line_error_naming_the_path(tmp_path, summary):
    _write(tmp_path / "ref", summary)
    (tmp_path / "empty").mkdir()
    for new in (tmp_path / "empty", tmp_path / "absent"):
        rc, stdout, err = cli("compare", str(tmp_path / "ref"), str(new))
        assert rc == 2 and stdout == "" and err.count("\n") == 1
        assert err.startswith(f"pmtrec: error: {new}: no summary table")
    with pytest.raises(PmtrecError, match="neither summary.csv nor tables/summary.csv"):
        compare_tables(tmp_path / "empty", tmp_path / "ref")


def test_a_missing_column_or_a_bad_file_is_a_one_line_error_naming_the_file(tmp_path, summary):
    _write(tmp_path / "ref", summary)
    bad = tmp_path / "new"
    _write(bad, summary.drop(columns="std"))
    rc, _, err = cli("compare", str(tmp_path / "ref"), str(bad))
    assert rc == 2 and err.count("\n") == 1
    assert err.startswith(f"pmtrec: error: {bad / 'summary.csv'}: no column std (a summary.csv has kind,")

    (bad / "summary.csv").write_text("")
    rc, _, err = cli("compare", str(tmp_path / "ref"), str(bad))
    assert rc == 2 and err.count("\n") == 1 and err.startswith(f"pmtrec: error: {bad / 'summary.csv'}: cannot read")

    _write(bad, summary.astype({"n": object}).assign(n=lambda d: d["n"].where(d.index != 3, "five")))
    rc, _, err = cli("compare", str(tmp_path / "ref"), str(bad))
    assert rc == 2 and err == f"pmtrec: error: {bad / 'summary.csv'}: line 5: n 'five' is not a count\n"

    _write(bad, pd.concat([summary, summary.iloc[[2]]], ignore_index=True))
    rc, _, err = cli("compare", str(tmp_path / "ref"), str(bad))
    assert rc == 2 and err.count("\n") == 1 and "appears twice" in err


def test_bad_options_are_one_line_errors(tmp_path, summary):
    _write(tmp_path / "ref", summary)
    for option, value in (("--level", "1.5"), ("--level", "0"), ("--atol", "-1")):
        rc, _, err = cli("compare", str(tmp_path / "ref"), str(tmp_path / "ref"), option, value)
        assert rc == 2 and err.count("\n") == 1 and err.startswith(f"pmtrec: error: {option} ")


def test_a_mean_no_seed_produced_matches_only_another(tmp_path, summary):
    i = _row(summary, variant="", **TARGET)
    summary.loc[i, ["mean", "std", "n"]] = [np.nan, np.nan, 0]  # every seed's value NaN
    _write(tmp_path / "ref", summary)
    assert set(compare_tables(tmp_path / "ref", tmp_path / "ref")["status"]) == {"ok"}
    moved = summary.copy()
    moved.loc[i, ["mean", "n"]] = [0.1, 5]
    _write(tmp_path / "new", moved)
    assert compare_tables(tmp_path / "ref", tmp_path / "new")["status"].value_counts().to_dict() == {"ok": 17,
                                                                                                   "outside": 1}
    assert compare_tables(tmp_path / "new", tmp_path / "ref")["status"].value_counts().to_dict() == {"ok": 17,
                                                                                                   "outside": 1}


def test_the_printed_table_stops_after_40_rows(tmp_path, summary):
    _write(tmp_path / "ref", summary), _write(tmp_path / "new", summary.assign(mean=summary["mean"] + 1))
    out = tmp_path / "all.csv"
    rc, stdout, _ = cli("compare", str(tmp_path / "ref"), str(tmp_path / "new"), "--metrics", "hit@10", "recall@20",
                        "ndcg@20", "--splits", "valid", "test", "--out", str(out))
    lines = stdout.strip().splitlines()
    assert rc == 3 and len(lines) == 1 + 40 + 2  # header, 40 rows, the rest counted, the summary line
    assert lines[-2] == f"... and {len(summary) - 40} more rows (all in {out})"
    assert len(pd.read_csv(out)) == len(summary)
