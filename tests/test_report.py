"""The report: table loading and formatting, the notebooks, the typst PDF (pmtrec.report).

The fast tests build synthetic aggregated tables with the real pmtrec.aggregate
(tests/synthetic_study.py), run the notebooks' code in-process and compile the PDF; one test runs
a notebook through papermill to check that a missing table fails with one line. The slow test
runs the workflow on the CI config (.test/config/config.yaml) and checks its PDF.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("typst")
pypdf = pytest.importorskip("pypdf")

from pmtrec.report import style  # noqa: E402
from pmtrec.report.build import build_report  # noqa: E402
from pmtrec.report.comparison import main_table  # noqa: E402
from pmtrec.report.data import ReportError, load_table, pick_datasets  # noqa: E402
from pmtrec.report.section import read_section  # noqa: E402
from pmtrec.report.tables import fmt_mean_std, fmt_pct, rank_marks, sig_marker  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ["00_claims", "01_datasets", "02_main_comparison", "03_ablation", "04_personalization",
             "05_training_dynamics", "06_sensitivity", "07_efficiency"]
SECTION_TITLES = ["Claims", "Datasets", "Main comparison", "Ablation", "Personalization", "Training dynamics",
                  "Sensitivity", "Efficiency"]
TABLE_ONLY = {"Claims"}  # sections without a figure


# ------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="session")
def study(tmp_path_factory):
    """Synthetic aggregated tables (real pmtrec.aggregate on fake result records)."""
    from synthetic_study import synthetic_study

    return synthetic_study(tmp_path_factory.mktemp("study"), datasets=("alpha", "beta"),
                           methods=["mostpop", "single", "ew", "uw", "pcgrad", "pmtrec"], seeds=(0, 1, 2),
                           variants=["pmtrec-no-personal", "pmtrec-no-focus"],
                           grid={"tau": [0.5, 1.0, 2.0], "focus_max": [0.25, 0.5]}, dims=(16, 32, 64))


def run_notebook_inprocess(name: str, params: dict) -> None:
    """Execute a notebook's code cells in this process (no kernel), its parameters cell replaced."""
    nb = json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text())
    ns: dict = {}
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        src = "".join(cell["source"])
        exec(compile(src, f"{name}.ipynb", "exec"), ns)
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            ns.update({k: v for k, v in params.items() if k in ns})


@pytest.fixture(scope="session")
def sections(study, tmp_path_factory):
    out = tmp_path_factory.mktemp("sections")
    import matplotlib

    matplotlib.use("Agg")
    params = {"tables_dir": str(study["tables"]), "datasets": [],
              "prepared_dirs": {d: str(p) for d, p in study["prepared"].items()},
              "bench_csvs": [str(study["bench_csv"])]}
    dirs = []
    for name in NOTEBOOKS:
        d = out / name
        run_notebook_inprocess(name, {**params, "out_dir": str(d)})
        dirs.append(d)
    return dirs


@pytest.fixture(scope="session")
def pdf(study, sections, tmp_path_factory):
    out = tmp_path_factory.mktemp("pdf") / "pmtrec_report.pdf"
    results = sorted(str(p) for p in Path(study["results"]).rglob("*.json"))
    build_report(sections, out, tables_dir=study["tables"], results=results, config_hash="abc123def456")
    return out


def pdf_text(path: Path) -> str:
    reader = pypdf.PdfReader(str(path))
    return "\n".join(page.extract_text() or "" for page in reader.pages)


# ------------------------------------------------------------------------------- table loading
def test_load_table_missing_is_one_line(tmp_path):
    with pytest.raises(ReportError) as exc:
        load_table(tmp_path, "summary")
    msg = str(exc.value)
    assert "\n" not in msg
    assert msg.startswith(str(tmp_path / "summary.csv")) and "table missing" in msg


def test_load_table_empty_and_header_only(tmp_path):
    (tmp_path / "summary.csv").write_text("")
    with pytest.raises(ReportError, match="table is empty"):
        load_table(tmp_path, "summary")
    (tmp_path / "summary.csv").write_text("kind,dataset,method,variant,split,metric,mean,std,n\n")
    with pytest.raises(ReportError, match="has no rows"):
        load_table(tmp_path, "summary")
    assert load_table(tmp_path, "summary", allow_empty=True).empty


def test_load_table_missing_column(tmp_path):
    (tmp_path / "summary.csv").write_text("kind,dataset\nmain,x\n")
    with pytest.raises(ReportError, match=r"missing column\(s\) method"):
        load_table(tmp_path, "summary")


def test_pick_datasets(study):
    summary = load_table(study["tables"], "summary")
    assert pick_datasets(summary, [], "summary.csv") == ["alpha", "beta"]
    with pytest.raises(ReportError, match="no rows for dataset"):
        pick_datasets(summary, ["gamma"], "summary.csv")
    assert pick_datasets(summary, ["gamma", "beta"], skip_missing=True) == ["beta"]


# ------------------------------------------------------------------------------- formatting
def test_formatting():
    assert fmt_mean_std(0.123456, 0.00123) == "0.1235 ± 0.0012"
    assert fmt_mean_std(0.1, float("nan")) == "0.1000"
    assert fmt_mean_std(float("nan"), 0.1) == "–"
    assert fmt_pct(0.0321) == "+3.2%" and fmt_pct(-0.5) == "-50.0%"
    assert rank_marks([0.1, 0.3, 0.2, 0.3]) == [None, "best", "second", "best"]  # ties share a rank
    assert rank_marks([0.5, float("nan")]) == ["best", None]
    assert [sig_marker(p) for p in (0.001, 0.03, 0.2, float("nan"))] == ["**", "*", "", ""]


def test_main_table_marks(study):
    summary = load_table(study["tables"], "summary")
    sig = load_table(study["tables"], "significance")
    comparisons = load_table(study["tables"], "comparisons")
    table, reading = main_table(summary, sig, "alpha", comparisons=comparisons)
    frame = table.to_frame()
    assert list(frame.columns) == ["Method", "Recall@10", "Recall@20", "Recall@50", "NDCG@10", "NDCG@20", "NDCG@50"]
    # synthetic PMTRec is best everywhere: bold in every metric column
    ref = frame[frame["Method"].str.contains("PMTRec")].iloc[0]
    assert all(str(v).startswith("**") for v in ref.iloc[1:])
    assert frame["Method"].iloc[-1].startswith("Improv. vs")
    assert sum("__" in str(v) for v in frame["NDCG@20"]) >= 1  # a second best
    assert "rank 1 of 6 methods" in reading
    # 3 seeds: no test, so no marker anywhere; the improvement row carries the seed interval
    assert not any(c.sup for row in table.rows for c in row)
    assert "No marker where untested (fewer than 5 seeds: no test)" in table.note
    base = sig.loc[sig["dataset"] == "alpha", "baseline"].iloc[0]
    c = comparisons.set_index(["dataset", "method", "metric"]).loc[("alpha", base, "ndcg@20")]
    rel = [100 * c["ci_low"] / c["mean_other"], 100 * c["ci_high"] / c["mean_other"]]
    assert frame["NDCG@20"].iloc[-1] == f"{c['rel_pct']:+.1f}% [{rel[0]:+.1f}, {rel[1]:+.1f}]"
    assert "fewer than 5 seeds: no test" in reading


def test_main_table_marks_only_holm_corrected_significance(study):
    summary = load_table(study["tables"], "summary")
    sig = load_table(study["tables"], "significance")
    comparisons = load_table(study["tables"], "comparisons")
    base = sig.loc[sig["dataset"] == "alpha", "baseline"].iloc[0]
    tested = comparisons.copy()
    at = (tested["dataset"] == "alpha") & (tested["method"] == base)
    # NDCG@20 significant after Holm; Recall@20 significant before it (p_user) but not after
    tested.loc[at, ["p_user", "p_holm"]] = [[0.001, 0.004] if m == "ndcg@20" else [0.01, 0.2]
                                            for m in tested.loc[at, "metric"]]
    table, reading = main_table(summary, sig, "alpha", comparisons=tested)
    ref = next(r for r in table.rows if r[0].text.startswith(style.label("pmtrec")))
    marks = dict(zip(table.columns[1:], [c.sup for c in ref[1:]]))
    assert marks["NDCG@20"] == "**" and marks["Recall@20"] == ""
    assert all(v == "" for k, v in marks.items() if k not in ("NDCG@20", "Recall@20"))  # not compared: none
    assert "Holm-corrected" in table.note and "significant on 1 of 2 tested metrics" in reading
    assert table.data.set_index(["method", "metric"]).loc[("pmtrec", "ndcg@20"), "p_holm"] == 0.004
    # without the comparisons table: no marker at all
    table, _ = main_table(summary, sig, "alpha")
    assert not any(c.sup for row in table.rows for c in row)


def test_claims_section(sections, study):
    from pmtrec.report.claims import fmt_ci

    claims = pd.read_csv(study["tables"] / "claims.csv")
    sec = read_section(sections[NOTEBOOKS.index("00_claims")])
    assert sec["title"] == "Claims"
    tables = [i for i in sec["items"] if i["kind"] == "table"]
    assert [t["id"] for t in tables] == [f"claim-{c}" for c in sorted(claims["claim"].unique())] == \
        ["claim-1", "claim-2", "claim-3", "claim-4"]

    def cells(item):
        t = item["table"]
        return [[c if isinstance(c, str) else c["t"] for c in row] for row in t["rows"]], t["columns"]

    rows, cols = cells(tables[0])
    c1 = claims[claims["claim"] == 1]
    assert cols[:3] == ["Dataset", "Metric", "Verdict"] and len(rows) == len(c1)
    # 3 seeds: every comparison untested, the interval still shown, the note says why
    for row, want in zip(rows, c1.to_dict("records")):
        assert row[cols.index("Verdict")] == want["verdict"] == "inconclusive (too few seeds)"
        assert row[cols.index("95% CI")] == fmt_ci(want["ci_low"], want["ci_high"]) != "–"
        assert row[cols.index("p (Holm)")] == "–"
        assert row[cols.index("Note")] == "fewer than 5 seeds: no test"
    assert "No p-value is given" in tables[0]["reading"] and f"of {len(c1)} dataset × metric cases" in \
        tables[0]["reading"]
    rows, cols = cells(tables[2])  # claim 3: the fake PMTRec gives its least active users more aux weight
    assert {r[cols.index("Verdict")] for r in rows} == set(claims.query("claim == 3")["verdict"]) == {"supported"}
    rows, cols = cells(tables[3])
    ratios = claims.query("claim == 4")["diff"]
    assert [r[cols.index("Effect")] for r in rows] == [f"{x:.2f}× EW" for x in ratios]


def test_claim_table_with_tested_rows():
    from pmtrec.report.claims import claim_table

    claims = pd.DataFrame([{"claim": 1, "claim_text": "PMTRec beats", "dataset": "d", "metric": "ndcg@20",
                            "verdict": "supported", "against": "ew", "diff": 0.0123, "ci_low": 0.01, "ci_high": 0.0146,
                            "rel_pct": 4.56, "p_holm": 0.0004, "note": ""},
                           {"claim": 1, "claim_text": "PMTRec beats", "dataset": "e", "metric": "ndcg@20",
                            "verdict": "equivalent", "against": "uw", "diff": -0.0001, "ci_low": -0.001,
                            "ci_high": 0.0008, "rel_pct": -0.05, "p_holm": 0.62, "note": ""}])
    table, reading = claim_table(claims, 1)
    frame = table.to_frame()
    assert frame["Effect"].tolist() == ["+0.0123 (+4.6%)", "-0.0001 (-0.1%)"]
    assert frame["95% CI"].tolist() == ["[+0.0100, +0.0146]", "[-0.0010, +0.0008]"]
    assert frame["p (Holm)"].tolist() == ["<0.001", "0.620"]
    assert reading == "Claim 1 (PMTRec beats): of 2 dataset × metric cases, 1 supported, 1 equivalent."


# ------------------------------------------------------------------------------ sections + PDF
def test_sections_written(sections):
    for d, title in zip(sections, SECTION_TITLES):
        sec = read_section(d)
        assert sec["title"] == title
        kinds = {i["kind"] for i in sec["items"]}
        assert "figure" in kinds or title in TABLE_ONLY, f"{d.name}: no figure"
        for item in sec["items"]:
            if item["kind"] in ("figure", "table"):
                assert item["reading"], f"{d.name}/{item['id']}: no reading"
            if item["kind"] == "figure":
                svg = (d / item["file"]).read_text()
                assert svg.lstrip().startswith("<?xml") and "<svg" in svg


def test_pdf_sections_and_values(pdf, study):
    text = pdf_text(pdf)
    norm = re.sub(r"\s+", " ", text)
    for i, title in enumerate(SECTION_TITLES, 1):
        assert f"{i}. {title}" in norm, f"section '{title}' not in the PDF"
    for word in ("Provenance", "Git commit", "abc123def456", "Hardware", "alpha", "beta"):
        assert word in norm
    summary = pd.read_csv(study["tables"] / "summary.csv")
    row = summary[(summary["kind"] == "main") & (summary["dataset"] == "alpha") & (summary["method"] == "pmtrec")
                  & (summary["split"] == "test") & (summary["metric"] == "ndcg@20")].iloc[0]
    assert fmt_mean_std(row["mean"], row["std"]) in norm
    assert "Table 1" in norm and "Figure 1" in norm
    assert len(pypdf.PdfReader(str(pdf)).pages) > 8


def test_pdf_is_written_atomically(sections, study, tmp_path, monkeypatch):
    out = tmp_path / "report.pdf"
    out.write_bytes(b"old")
    import typst

    def boom(*a, **k):
        raise RuntimeError("error: unexpected token\n  at main.typ:3")

    monkeypatch.setattr(typst, "compile", boom)
    with pytest.raises(ReportError, match="typst failed to compile the report: error: unexpected token"):
        build_report(sections, out, tables_dir=study["tables"])
    assert out.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.pdf"]  # no temp file left


def test_build_refuses_missing_section(tmp_path):
    with pytest.raises(ReportError, match="section missing"):
        build_report([tmp_path], tmp_path / "r.pdf")


# --------------------------------------------------------------------------- papermill failure
def test_papermill_missing_table_fails_with_one_line(tmp_path):
    pm = pytest.importorskip("papermill")
    from pmtrec.report.execute import execute, main

    nb_out = tmp_path / "02.ipynb"
    with pytest.raises(pm.PapermillExecutionError) as exc:
        pm.execute_notebook(str(ROOT / "notebooks" / "02_main_comparison.ipynb"), str(nb_out),
                            parameters={"tables_dir": str(tmp_path / "none"), "out_dir": str(tmp_path / "o")},
                            kernel_name="python3", progress_bar=False, cwd=str(ROOT))
    expected = f"pmtrec report: error: {tmp_path / 'none' / 'summary.csv'}: table missing"
    assert expected in str(exc.value)
    assert "Traceback" not in str(exc.value)
    # the runner the workflow uses: exit 1, one line on stderr
    proc = subprocess.run([sys.executable, "-m", "pmtrec.report.execute", str(ROOT / "notebooks" / "03_ablation.ipynb"),
                           str(tmp_path / "03.ipynb"), "--tables", str(tmp_path / "none"), "--out-dir",
                           str(tmp_path / "o3")], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 1
    err = [ln for ln in proc.stderr.splitlines() if ln.startswith("pmtrec report: error:")]
    assert err == [f"pmtrec report: error: 03_ablation.ipynb: {tmp_path / 'none' / 'ablation.csv'}: table missing "
                   "(run the workflow's aggregate step first: snakemake --cores 1 tables)"]
    assert "Traceback" not in proc.stderr
    assert callable(main) and callable(execute)


# ------------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_workflow_ci_config_pdf(tmp_path):
    """snakemake on the CI config -> reports/pmtrec_report.pdf with every section and a table value."""
    snakemake = shutil.which("snakemake", path=os.path.dirname(sys.executable)) or shutil.which("snakemake")
    if snakemake is None or not (ROOT / ".test" / "config" / "config.yaml").is_file():
        pytest.skip("snakemake or the CI config is not available")
    work = tmp_path / "repo"
    ignore = shutil.ignore_patterns(".git", ".venv", "results", "resources", "logs", ".snakemake", "reports",
                                    "__pycache__", "*.egg-info", "runs")
    shutil.copytree(ROOT, work, ignore=ignore)
    proc = subprocess.run([snakemake, "all", "--cores", "2", "--configfile", ".test/config/config.yaml"],
                          cwd=work, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    pdf_path = work / "reports" / "pmtrec_report.pdf"
    norm = re.sub(r"\s+", " ", pdf_text(pdf_path))
    for i, title in enumerate(SECTION_TITLES, 1):
        assert f"{i}. {title}" in norm
    summary = pd.read_csv(work / "results" / "tables" / "summary.csv")
    row = summary[(summary["kind"] == "main") & (summary["method"] == "pmtrec") & (summary["split"] == "test")
                  & (summary["metric"] == "ndcg@20")].iloc[0]
    assert fmt_mean_std(row["mean"], row["std"]) in norm
    # the Claims section opens the report; the CI study's 2 seeds are too few for any test
    claims = pd.read_csv(work / "results" / "tables" / "claims.csv")
    assert set(claims.query("claim in (1, 2)")["verdict"]) == {"inconclusive (too few seeds)"}
    assert norm.index("1. Claims") < norm.index("2. Datasets")
    assert "inconclusive (too few seeds)" in norm and "fewer than 5 seeds: no test" in norm
    comparisons = pd.read_csv(work / "results" / "tables" / "comparisons.csv")
    assert comparisons["ci_low"].notna().any() and comparisons["p_holm"].isna().all()
    # `pmtrec report` rebuilds the same tables and the PDF from the results folder alone, elsewhere
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = subprocess.run([sys.executable, "-m", "pmtrec", "report", str(work / "results"), "-o", "r.pdf"],
                          cwd=elsewhere, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("summary", "significance", "runs", "ablation", "sensitivity", "tuning", "probes", "comparisons",
                 "claims"):
        assert (elsewhere / "r.pdf.work" / "tables" / f"{name}.csv").read_text() == \
            (work / "results" / "tables" / f"{name}.csv").read_text(), name
    again = re.sub(r"\s+", " ", pdf_text(elsewhere / "r.pdf"))
    assert fmt_mean_std(row["mean"], row["std"]) in again and f"{len(SECTION_TITLES)}. " in again
    # the Snakemake HTML report (report() flags + captions in workflow/report/)
    proc = subprocess.run([snakemake, "--configfile", ".test/config/config.yaml", "--report", "report.html"],
                          cwd=work, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (work / "report.html").stat().st_size > 10_000


def test_bench_targets_table_sets_every_figure_against_its_target():
    from pmtrec.report import efficiency

    def row(section, dataset, item, value, unit, target):
        return {"hardware": "cpu:x2", "section": section, "dataset": dataset, "item": item, "value": value,
                "unit": unit, "target": target}

    bench = pd.DataFrame([
        row("step", "ciao", "ew", 1.0, "x ew", 4.0), row("step", "ciao", "pmtrec", 1.3, "x ew", 1.5),
        row("step", "ciao", "pmtrec-no-focus", 1.9, "x ew", 1.5), row("step", "ciao", "cagrad", 1.6, "x ew", 4.0),
        row("step", "ciao", "pcgrad", 1.2, "x ew", 4.0), row("eval", "ciao", "eval/floor", 1.1, "x floor", 1.5),
        row("eval", "ciao", "users_per_s", 15000.0, "users/s", None),
        row("scale", "synthetic", "ew:slope_vs_linear", 1.68, "x linear", 1.2)])
    table, reading = efficiency.bench_targets_table(bench)
    frame = table.to_frame()
    assert list(frame["Figure"]) == ["PMTRec step / EW step", "slowest other method (CAGrad) / EW",
                                     "eval: eval/floor", "scale: ew:slope_vs_linear"]
    assert list(frame["Measured"]) == ["1.30×", "1.60×", "1.10×", "1.68×"]
    assert list(frame["Met"]) == ["yes", "yes", "yes", "**no**"]
    assert reading == ("3 of 4 benchmark figures meet their targets. Not met: scale: ew:slope_vs_linear on "
                       "synthetic (1.68× against ≤ 1.2×).")
    assert efficiency.bench_targets_table(bench[bench["target"].isna()]) == (None, "")


def test_efficiency_section_has_the_bench_targets_table(sections):
    sec = read_section(sections[NOTEBOOKS.index("07_efficiency")])
    tables = {item["id"]: item for item in sec["items"] if item["kind"] == "table"}
    assert "bench-targets" in tables, list(tables)
    # the fixture's suite CSV: every PMTRec step under 1.5x, the scale slope 1.4x against 1.2x
    assert tables["bench-targets"]["reading"].endswith("Not met: scale: ew:slope_vs_linear on synthetic "
                                                       "(1.40× against ≤ 1.2×).")


def test_study_cost_table_adds_up_cpu_seconds_per_stage_and_dataset():
    from pmtrec.report import efficiency

    def run(kind, dataset, method, cpu, epochs=10, bench_s=float("nan")):
        return {"kind": kind, "dataset": dataset, "method": method, "device": "cpu", "epochs_run": epochs,
                "epoch_time_s": 0.5 if epochs else 0.0, "wall_time_s": 9.0, "bench_s": bench_s,
                "bench_cpu_time_s": cpu}

    eff = pd.DataFrame([run("main", "a", "ew", 10.0), run("main", "a", "mostpop", 2.0, epochs=0),
                        run("main", "b", "ew", 30.0), run("tune", "a", "ew", float("nan"), bench_s=18.0)])
    table, reading = efficiency.study_cost_table(eff)
    frame = table.to_frame()
    assert list(frame["Stage"]) == ["tuning", "main comparison", "main comparison", "**total**"]
    assert list(frame["CPU-s"]) == ["18", "12", "30", "**60**"]  # the fallback to the job's seconds counted
    assert list(frame["Share"]) == ["30%", "20%", "50%", "100%"]
    assert list(frame["Epochs / job"])[:3] == ["10", "5", "10"]
    assert "from bench_s (the job's wall seconds)" in table.note and "benchmarks.study_cost" in table.note
    assert reading == ("The study's 4 runs used 60 CPU-seconds (0.02 CPU hours); the main comparison stage "
                       "took the most, 70%.")
    with pytest.raises(ReportError, match="efficiency.csv: no runs"):
        efficiency.study_cost_table(eff.iloc[:0])


def test_efficiency_section_has_the_study_cost_table(sections, study):
    sec = read_section(sections[NOTEBOOKS.index("07_efficiency")])
    tables = {item["id"]: item for item in sec["items"] if item["kind"] == "table"}
    assert "study-cost" in tables, list(tables)
    eff = load_table(study["tables"], "efficiency")
    total = [c if isinstance(c, str) else c["t"] for c in tables["study-cost"]["table"]["rows"][-1]]
    assert total[:3] == ["total", "", str(len(eff))]
    assert float(total[3].replace(",", "")) == pytest.approx(eff["bench_cpu_time_s"].sum(), rel=5e-4)
    data = pd.read_csv(sections[NOTEBOOKS.index("07_efficiency")] / tables["study-cost"]["csv"])
    assert data["cpu_s"].iloc[-1] == pytest.approx(eff["bench_cpu_time_s"].sum())
    assert data["cpu_s"].iloc[:-1].sum() == pytest.approx(data["cpu_s"].iloc[-1])


def test_dataset_table_shows_labelled_items_and_cold_users_and_names_only_relations_present():
    import pandas as pd

    from pmtrec.report.datasets import stats_table

    stats = pd.DataFrame([
        {"dataset": "a", "users": 10, "items": 20, "interactions": 50, "density": 0.25, "social_links": 0,
         "categories": 3, "category_items": 15, "coview_links": 7, "cold_users_frac": 0.125},
        {"dataset": "b", "users": 4, "items": 5, "interactions": 8, "density": 0.4, "social_links": 6,
         "categories": 0, "category_items": 0, "coview_links": 0, "cold_users_frac": 0.0}])
    table, reading = stats_table(stats, ["a", "b"])
    assert table.columns[-3:] == ["Items with a category", "Co-view links", "Cold users"]
    assert [row[-1].text for row in table.rows] == ["12.5%", "0.0%"]
    assert "a has 10 users" in reading and "draw on 3 categories, 7 co-view links" in reading
    assert "b has 4 users" in reading and "draw on 6 social links." in reading and "0 social" not in reading


# ------------------------------------------------------------------ numbers, LaTeX, honest plots
def _summary_rows(method, means, stds, n=3):
    return [{"kind": "main", "dataset": "d", "method": method, "variant": "", "split": "test", "metric": m,
             "mean": mu, "std": sd, "n": n} for m, mu, sd in zip(("recall@20", "ndcg@20"), means, stds)]


def test_a_deterministic_method_shows_its_mean_not_a_zero_interval():
    assert fmt_mean_std(0.12619, 0.0) == fmt_mean_std(0.12619, 6.9e-18) == "0.1262"  # 6.9e-18: float noise
    assert fmt_mean_std(0.12619, 3e-6) == "0.1262 ± <0.0001"  # a real spread below the precision
    summary = pd.DataFrame(_summary_rows("mostpop", (0.1262, 0.0601), (0.0, 6.9e-18))
                           + _summary_rows("ew", (0.2, 0.1), (0.003, 0.002)))
    table, _ = main_table(summary, pd.DataFrame(columns=["dataset", "metric", "baseline"]), "d")
    assert "± 0.0000" not in table.text() and "0.1262" in table.text()
    assert "0.2000 ± 0.0030" in table.text()
    assert f"{style.label('mostpop')}: the same result on every seed (deterministic)" in table.note
    assert style.label("ew") + ":" not in table.note


def test_section_tables_are_numeric_csv_and_booktabs_tex(sections, study):
    d = sections[NOTEBOOKS.index("02_main_comparison")]
    item = next(i for i in read_section(d)["items"] if i["kind"] == "table" and i["id"] == "main-alpha")
    csv = pd.read_csv(d / item["csv"])
    assert not csv.astype(str).apply(lambda c: c.str.contains(r"\*\*|__|±")).any().any()  # no markup
    summary = pd.read_csv(study["tables"] / "summary.csv")
    want = summary[(summary["kind"] == "main") & (summary["dataset"] == "alpha") & (summary["split"] == "test")
                   & (summary["metric"] == "ndcg@20")].set_index("method")
    got = csv[csv["metric"] == "ndcg@20"].set_index("method")
    assert got["mean"].to_dict() == pytest.approx(want["mean"].to_dict())
    assert got["std"].to_dict() == pytest.approx(want["std"].to_dict())
    assert (got["n_seeds"] == 3).all()
    assert got["best"].dtype == bool and list(got.index[got["best"]]) == [want["mean"].idxmax()]
    assert got["significant"].sum() <= 1 and not got.drop(index="pmtrec")["significant"].any()
    tex = (d / item["tex"]).read_text()
    assert [ln for ln in tex.splitlines() if ln.endswith("rule")][:2] == ["\\toprule", "\\midrule"]
    assert tex.rstrip().endswith("\\end{tabular}") and "\\bottomrule" in tex
    best = fmt_mean_std(want.loc["pmtrec", "mean"], want.loc["pmtrec", "std"]).replace("±", "$\\pm$")
    assert f"\\textbf{{{best}" in tex  # the best cell bold, as in the PDF
    # every table of every section has both files
    for sd in sections:
        for it in read_section(sd)["items"]:
            if it["kind"] == "table":
                assert (sd / it["csv"]).is_file() and (sd / it["tex"]).read_text().count("\\toprule") == 1


def test_latex_keeps_repeated_headers_rules_and_escapes():
    from pmtrec.report.tables import Cell, Table

    t = Table(["Method", "× EW", "× EW"])
    t.add([Cell("a_b", bold=True), Cell("1.20", sup="**"), Cell("50%", underline=True)])
    t.add([Cell("Improv.", italic=True), "–", "x"], rule=True)
    lines = t.to_latex("cap").splitlines()
    assert lines[0] == "% cap" and lines[1] == "\\begin{tabular}{lrr}"
    assert "Method & $\\times$ EW & $\\times$ EW \\\\" in lines
    i = lines.index("\\textbf{a\\_b} & 1.20\\textsuperscript{**} & \\underline{50\\%} \\\\")
    assert lines[i + 1] == "\\midrule" and lines[i + 2].startswith("\\textit{Improv.} & --")


def test_report_figures_never_show_an_offset_on_tiny_differences():
    from pmtrec.report import sensitivity

    style.theme()
    s = pd.DataFrame({"tau": [0.5, 1.0, 2.0], "mean": [0.158401, 0.158404, 0.158412], "std": [1e-6] * 3})
    fig = sensitivity.grid_plot(s, ["tau"])
    fig.canvas.draw()
    ax = fig.axes[0]
    assert ax.yaxis.get_offset_text().get_text() == ""
    labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert labels and all(0.1583 < float(lab) < 0.1585 for lab in labels)  # the values themselves


def test_ablation_plot_shows_paired_differences_with_intervals():
    from scipy import stats

    from pmtrec.report import comparison

    full = [0.30, 0.32, 0.31]
    var = [0.29, 0.30, 0.305]
    runs = pd.DataFrame(
        [{"kind": "main", "dataset": "d", "method": "pmtrec", "variant": "", "seed": s, "split": "test",
          "metric": "ndcg@20", "value": v} for s, v in enumerate(full)]
        + [{"kind": "ablation", "dataset": "d", "method": "pmtrec-no-focus", "variant": "", "seed": s,
            "split": "test", "metric": "ndcg@20", "value": v} for s, v in enumerate(var)])
    d = comparison.ablation_deltas(runs, ["d"]).iloc[0]
    diff = [v - f for v, f in zip(var, full)]
    half = stats.t.ppf(0.975, 2) * pd.Series(diff).std() / 3 ** 0.5
    assert d["delta"] == pytest.approx(sum(diff) / 3) and d["n_seeds"] == 3
    assert (d["ci_low"], d["ci_high"]) == pytest.approx((d["delta"] - half, d["delta"] + half))
    assert d["rel_delta"] == pytest.approx(d["delta"] / (sum(full) / 3))
    style.theme()
    fig = comparison.ablation_plot(comparison.ablation_deltas(runs, ["d"]), metrics=("ndcg@20",))
    ax = fig.axes[0]
    lo, hi = ax.get_xlim()
    assert lo == pytest.approx(-hi) and lo < d["ci_low"] and hi > abs(d["ci_low"])  # symmetric about 0
    assert any(list(ln.get_xdata()) == [0, 0] for ln in ax.get_lines())  # the full model's zero line
    reading = comparison.ablation_plot_reading(comparison.ablation_deltas(runs, ["d"]))
    assert f"{d['delta']:+.4f}" in reading and ("below zero" in reading) == (d["ci_high"] < 0)


def test_benchmark_origin_reference_copy_or_own_run(tmp_path):
    from pmtrec.report import efficiency
    from pmtrec.report.data import load_benchmark_csvs

    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    csv = tmp_path / "cpu.csv"
    csv.write_text("hardware,section,dataset,item,value\ncpu:x2,step,s,pmtrec,1.2\n")
    subprocess.run(git[:5] + ["init", "-q", str(tmp_path)], check=True)
    subprocess.run(git + ["add", "cpu.csv"], check=True)
    subprocess.run(git + ["commit", "-qm", "ref", "--date", "2026-11-29T12:00:00Z"], check=True,
                   env={**os.environ, "GIT_COMMITTER_DATE": "2026-11-29T12:00:00Z"})
    ref = efficiency.bench_origin(csv, load_benchmark_csvs([csv]))
    assert ref == {"path": str(csv), "origin": "reference", "hardware": "cpu:x2", "date": "2026-11-29"}
    text = efficiency.bench_origin_text([ref])
    assert "reference numbers shipped with the repository" in text and "2026-11-29" in text
    csv.write_text("hardware,section,dataset,item,value\ncpu:mine,step,s,pmtrec,1.1\n")
    own = efficiency.bench_origin(csv, load_benchmark_csvs([csv]))
    assert own["origin"] == "own" and own["hardware"] == "cpu:mine"
    assert "your own benchmark run" in efficiency.bench_origin_text([own])
    assert efficiency.bench_label([own]).startswith(" (your run: cpu:mine, ")


def test_pdf_has_no_mark_info_poppler_misreads(pdf):
    # typst writes /MarkInfo << /Marked true /Suspects false >>; poppler 22.12 reports every such file
    # with "Syntax Error: Suspects object is wrong type (boolean)". The tags stay, the key goes.
    root = pypdf.PdfReader(str(pdf)).trailer["/Root"]
    assert root["/MarkInfo"]["/Marked"] == True and "/Suspects" not in root["/MarkInfo"]  # noqa: E712
    assert "/StructTreeRoot" in root
    if shutil.which("pdfinfo"):
        proc = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True)
        assert proc.returncode == 0 and proc.stderr == ""


def test_study_report_refuses_an_unknown_significance_option(tmp_path):
    from pmtrec.report.study import build_study_report

    with pytest.raises(ReportError) as err:
        build_study_report([tmp_path], tmp_path / "r.pdf", tmp_path / "work", significance={"min_seed": 3})
    assert str(err.value) == ("unknown significance option 'min_seed' (known: min_seeds, equivalence_margin, "
                              "n_resamples)")
    assert not (tmp_path / "work").exists()


def test_personalization_section_of_a_study_without_pmtrec(tmp_path):
    """A study of baselines only (e.g. a user's own method against them) logs no per-row weights:
    the section says so and still shows the accuracy per user group, instead of failing the report."""
    import matplotlib
    from synthetic_study import synthetic_study

    matplotlib.use("Agg")
    study = synthetic_study(tmp_path / "study", datasets=("alpha",), methods=["mostpop", "ew", "uw"], seeds=(0, 1),
                            variants=[], benchmarks=False)
    out = tmp_path / "section"
    run_notebook_inprocess("04_personalization", {"tables_dir": str(study["tables"]), "datasets": [],
                                                  "out_dir": str(out)})
    items = read_section(out)["items"]
    texts = [i["text"] for i in items if i["kind"] == "text"]
    assert any(t.startswith("No per-row task weights on alpha") for t in texts), texts
    assert not [i for i in items if i.get("id", "").startswith("row-weights")]
    assert [i["id"] for i in items if i["kind"] == "table"][:1] == ["groups-alpha"]


def test_provenance_names_the_datasets_that_run_fewer_methods(tmp_path):
    from pmtrec.report.build import provenance

    rows = [{"kind": "main", "dataset": d, "method": m, "n": 5}
            for d, ms in (("ciao", ["ew", "uw", "pmtrec"]), ("epinions", ["ew", "pmtrec"])) for m in ms]
    pd.DataFrame(rows).to_csv(tmp_path / "summary.csv", index=False)
    methods = dict(provenance(tmp_path, date="x"))["Methods"]
    assert methods == "EW, UW, PMTRec (only epinions: EW, PMTRec)", methods
    pd.DataFrame([r for r in rows if r["dataset"] == "ciao"]).to_csv(tmp_path / "summary.csv", index=False)
    assert dict(provenance(tmp_path, date="x"))["Methods"] == "EW, UW, PMTRec"
