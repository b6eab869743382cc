"""The study's cost (pmtrec.study.cost, benchmarks/study_cost.py): hand-computed tables and projections."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pmtrec.errors import DataError, PmtrecError
from pmtrec.study import cost, load_study

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "workflow/schemas/config.schema.yaml"
NAN = float("nan")


def run(kind, dataset, method, cpu, s=NAN, wall=NAN, epochs=10, epoch_s=0.5, device="cpu (x86_64, 1 thread)"):
    return {"kind": kind, "dataset": dataset, "method": method, "variant": "", "seed": 0, "device": device,
            "epochs_run": epochs, "epoch_time_s": epoch_s, "wall_time_s": wall, "bench_s": s,
            "bench_cpu_time_s": cpu}


def efficiency(rows) -> pd.DataFrame:
    return pd.DataFrame(rows)


def measured_frame() -> pd.DataFrame:
    """Dataset 'a': ew 3 jobs (20 CPU-s mean, 10 epochs), mostpop 4 CPU-s (untrained), tune/pmtrec 30."""
    return cost.cost_table(efficiency([
        run("main", "a", "ew", 10.0, s=40.0), run("main", "a", "ew", 20.0, s=50.0),
        run("main", "a", "ew", NAN, s=30.0, wall=25.0),  # no cpu_time: falls back to the job's seconds
        run("main", "a", "mostpop", 4.0, s=8.0, epochs=0, epoch_s=0.0),
        run("tune", "a", "pmtrec", 30.0, s=60.0, epochs=10)]))


# ---------------------------------------------------------------------------------- cost_table
def test_cost_table_totals_means_and_sources():
    t = measured_frame().set_index(["stage", "method"])
    ew = t.loc[("main", "ew")]
    assert ew["jobs"] == 3 and ew["cpu_s"] == pytest.approx(60.0) and ew["cpu_s_mean"] == pytest.approx(20.0)
    assert ew["source"] == "bench_cpu_time_s+bench_s"  # says which rows fell back
    assert ew["job_s"] == pytest.approx(120.0) and ew["job_source"] == "bench_s"
    assert ew["epochs_mean"] == 10 and ew["epoch_s_mean"] == pytest.approx(0.5)
    mp = t.loc[("main", "mostpop")]
    assert mp["epochs_mean"] == 0 and math.isnan(mp["epoch_s_mean"])  # no epochs, no time per epoch
    assert set(t["hardware"]) == {"cpu"}
    # stages in the workflow's order: tune before main
    assert list(measured_frame()["stage"]) == ["tune", "main", "main"]


def test_cost_table_total_is_the_sum_of_the_jobs_and_falls_back_to_the_run_wall_time():
    e = efficiency([run("main", "a", "ew", NAN, wall=7.0), run("main", "b", "ew", 3.0),
                    run("ablation", "b", "pmtrec-none", 5.0, device="cuda:0 (H200)", s=9.0)])
    t = cost.cost_table(e)
    assert t["cpu_s"].sum() == pytest.approx(15.0) and t["jobs"].sum() == 3
    a = t[t["dataset"] == "a"].iloc[0]
    assert a["source"] == "wall_time_s" and a["job_source"] == "wall_time_s" and a["job_s"] == 7.0
    assert t.loc[t["stage"] == "ablation", "hardware"].item() == "gpu"


def test_cost_table_empty_and_missing_columns():
    empty = cost.cost_table(pd.DataFrame(columns=cost.EFFICIENCY_COLUMNS))
    assert empty.empty and list(empty.columns) == cost.COST_COLUMNS
    with pytest.raises(DataError, match=r"^results/tables/efficiency.csv: missing column\(s\) bench_cpu_time_s$"):
        cost.cost_table(efficiency([run("main", "a", "ew", 1.0)]).drop(columns="bench_cpu_time_s"),
                        "results/tables/efficiency.csv")


# ------------------------------------------------------------------------------------- project
def plan(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["stage", "dataset", "method", "jobs", "trains"])


def test_project_own_measurement_is_jobs_times_mean():
    p = cost.project(measured_frame(), plan([("main", "a", "ew", 5, True), ("main", "a", "mostpop", 2, False)]))
    ew, mp = p.iloc[0], p.iloc[1]
    assert ew["cpu_s"] == pytest.approx(100.0) and ew["projected_from"] == "" and ew["factor"] == 1.0
    assert mp["cpu_s"] == pytest.approx(8.0)
    assert p["gpu_s"].isna().all()  # no GPU rows measured: no GPU figures


def test_project_scales_an_unmeasured_dataset_linearly_and_marks_it():
    m = measured_frame()
    one = cost.project(m, plan([("main", "b", "ew", 5, True)]), {"a": 100.0, "b": 300.0}).iloc[0]
    two = cost.project(m, plan([("main", "b", "ew", 5, True)]), {"a": 100.0, "b": 600.0}).iloc[0]
    assert one["projected_from"] == "main/a" and one["factor"] == pytest.approx(3.0)
    assert one["cpu_s"] == pytest.approx(5 * 20.0 * 3.0)
    assert two["cpu_s"] == pytest.approx(2 * one["cpu_s"])  # linear in the size factor
    with pytest.raises(PmtrecError, match="no measurement to project main/b/ew from on cpu"):
        cost.project(m, plan([("main", "b", "ew", 5, True)]), None)  # never silently


def test_project_borrows_another_stage_then_the_stage_mean_of_the_same_kind():
    p = cost.project(measured_frame(), plan([("tune", "a", "ew", 4, True), ("main", "a", "pcgrad", 1, True),
                                             ("main", "a", "pop2", 1, False), ("ablation", "a", "v", 2, True)]))
    p = p.set_index(["stage", "method"])
    assert p.loc[("tune", "ew"), "projected_from"] == "main/ew/a"
    assert p.loc[("tune", "ew"), "cpu_s"] == pytest.approx(80.0)
    # pcgrad never ran: the mean of main's trained methods (ew only); an untrained one: mostpop's
    assert p.loc[("main", "pcgrad"), "projected_from"] == "mean of main methods/a"
    assert p.loc[("main", "pcgrad"), "cpu_s"] == pytest.approx(20.0)
    assert p.loc[("main", "pop2"), "cpu_s"] == pytest.approx(4.0)
    # no ablation measured at all: the mean over every stage's trained jobs, (20 + 30) / 2 per job
    assert p.loc[("ablation", "v"), "projected_from"] == "mean of all methods/a"
    assert p.loc[("ablation", "v"), "cpu_s"] == pytest.approx(2 * 25.0)


def test_project_epochs_scale_only_the_part_above_the_untrained_job():
    p = cost.project(measured_frame(), plan([("main", "a", "ew", 1, True), ("main", "a", "mostpop", 1, False)]),
                     epochs=20)
    # ew: 4 (mostpop's start-up, loading and test) + (20 - 4) x 20 / 10 epochs
    assert p["cpu_s"].tolist() == pytest.approx([4.0 + 16.0 * 2, 4.0])


def test_project_gpu_column_from_cuda_rows_and_prepare_costs_no_gpu_time():
    e = efficiency([run("main", "a", "ew", 10.0, s=40.0),
                    run("main", "a", "ew", 12.0, s=6.0, device="cuda:0 (NVIDIA H200)"),
                    {**run("prepare", "a", "", 2.0, s=3.0, epochs=0, epoch_s=NAN), "device": "cpu"}])
    p = cost.project(cost.cost_table(e), plan([("prepare", "a", "", 2, False), ("main", "a", "ew", 5, True)]))
    prep, ew = p.iloc[0], p.iloc[1]
    assert prep["cpu_s"] == pytest.approx(4.0) and prep["gpu_s"] == 0 and prep["gpu_projected_from"] == "CPU job"
    assert ew["cpu_s"] == pytest.approx(50.0) and ew["gpu_s"] == pytest.approx(30.0)  # GPU: job seconds


def test_project_of_an_empty_plan_has_the_columns():
    p = cost.project(measured_frame(), plan([]))
    assert p.empty and list(p.columns) == cost.PROJECTION_COLUMNS


# -------------------------------------------------------------------------------------- totals
def test_totals_add_up_and_divide_by_the_jobs_at_once():
    p = cost.project(measured_frame(), plan([("tune", "a", "pmtrec", 2, True), ("main", "a", "ew", 3, True),
                                             ("main", "b", "ew", 1, True)]), {"a": 1.0, "b": 2.0})
    t = cost.totals(p, cores=4, parallel=2).set_index("stage")
    assert t.loc["main", "cpu_s"] == pytest.approx(3 * 20 + 40) and t.loc["tune", "cpu_s"] == pytest.approx(60)
    assert t.loc["total", "cpu_s"] == pytest.approx(160) and t.loc["total", "jobs"] == 6
    assert t.loc["total", "wall_h"] == pytest.approx(160 / 3600 / 2)  # 2 jobs at once (of 4 cores)
    assert cost.totals(p, cores=1, parallel=8).loc[2, "wall_h"] == pytest.approx(160 / 3600)
    assert t.loc["main", "projected_jobs"] == 1 and t.loc["tune", "projected_jobs"] == 0
    assert math.isnan(t.loc["total", "gpu_h"])
    with pytest.raises(PmtrecError, match="cores"):
        cost.totals(p, cores=0)


# ---------------------------------------------------------------------------------- plan_counts
def test_plan_counts_match_the_paper_config():
    cfg = yaml.safe_load((ROOT / "config/paper.yaml").read_text())
    study = load_study(copy.deepcopy(cfg), SCHEMA)
    counts = cost.plan_counts(study)
    by_stage = counts.groupby("stage")["jobs"].sum()
    assert by_stage["main"] == len(cfg["datasets"]) * len(cfg["methods"]) * len(cfg["seeds"])
    assert counts["jobs"].sum() - by_stage["prepare"] == len(study.result_entries())
    # split_seed: run: one prepared folder per dataset and seed that any run reads
    seeds = set(cfg["seeds"]) | set(cfg["tune"]["seeds"])
    assert by_stage["prepare"] == len(cfg["datasets"]) * len(seeds)
    mp = counts[(counts["stage"] == "main") & (counts["method"] == "mostpop")]
    assert len(mp) == len(cfg["datasets"]) and not mp["trains"].any()  # kept: its cost is not zero


# ------------------------------------------------------------------------------ the benchmark CLI
def _study_tables(root: Path) -> Path:
    tables = root / "results" / "tables"
    tables.mkdir(parents=True)
    rows = []
    for method, cpu in (("mostpop", 3.0), ("single", 6.0), ("ew", 8.0), ("pmtrec", 10.0)):
        for seed in (0, 1):
            rows.append({**run("main", "synthetic-small", method, cpu + seed, s=2 * cpu,
                               epochs=0 if method == "mostpop" else 12), "seed": seed})
    rows.append(run("tune", "synthetic-small", "pmtrec", 9.0, s=20.0, epochs=12))
    efficiency(rows).to_csv(tables / "efficiency.csv", index=False)
    pd.DataFrame([{"dataset": "synthetic-small", "interactions": 1000, "social_links": 500}]).to_csv(
        tables / "dataset_stats.csv", index=False)
    prep = root / "benchmarks" / "runs" / "prepare"
    prep.mkdir(parents=True)
    (prep / "synthetic-small.tsv").write_text("s\th:m:s\tmax_rss\tcpu_time\n2.0\t0:00:02\t100\t1.5\n")
    (prep / "other-study.tsv").write_text("s\th:m:s\tmax_rss\tcpu_time\n99\t0:01:39\t100\t99\n")
    return tables


def test_study_cost_cli_writes_the_measured_table_and_the_projection(tmp_path, capsys):
    from benchmarks.study_cost import main

    tables = _study_tables(tmp_path)
    stats = tmp_path / "stats.csv"
    sizes = (("ciao", 2500), ("epinions", 5500), ("amazon-hin", 1000), ("lastfm", 500))
    pd.DataFrame([{"dataset": d, "interactions": n, "social_links": 500} for d, n in sizes]).to_csv(stats, index=False)
    out = tmp_path / "out"
    assert main(["--tables", str(tables), "--config", str(ROOT / "config/paper.yaml"), "--cores", "2",
                 "--epochs", "measured", "--stats", str(stats), "--out", str(out)]) == 0
    measured = pd.read_csv(out / "study_cost.csv", keep_default_na=False, na_values=[""])
    assert measured.loc[measured["stage"] == "prepare", "cpu_s"].tolist() == [1.5]  # not the other study's
    assert measured["jobs"].sum() == 10
    proj = pd.read_csv(out / "study_cost_projection.csv", keep_default_na=False, na_values=[""])
    cfg = yaml.safe_load((ROOT / "config/paper.yaml").read_text())
    assert proj.loc[proj["stage"] == "main", "jobs"].sum() == len(cfg["datasets"]) * len(cfg["methods"]) * 5
    assert (proj["projected_from"] != "").all()  # no paper dataset was measured: every row borrowed
    ciao_ew = proj[(proj["stage"] == "main") & (proj["dataset"] == "ciao") & (proj["method"] == "ew")].iloc[0]
    assert ciao_ew["factor"] == pytest.approx(3000 / 1500)
    assert ciao_ew["cpu_s"] == pytest.approx(5 * 8.5 * 2)  # 5 seeds x ew's mean x the size ratio
    assert proj["gpu_s"].isna().all()
    totals = pd.read_csv(out / "study_cost_totals.csv")
    assert totals.iloc[-1]["stage"] == "total"
    assert totals.iloc[-1]["cpu_s"] == pytest.approx(proj["cpu_s"].sum())
    text = capsys.readouterr().out
    assert "no GPU projection" in text and "planned epochs per trained job: as measured" in text
    # the measured table alone (no tables) projects the same study: the cost of planning a new one
    again = tmp_path / "again"
    assert main(["--measured", str(out / "study_cost.csv"), "--config", str(ROOT / "config/paper.yaml"),
                 "--cores", "2", "--epochs", "measured", "--stats", str(tables / "dataset_stats.csv"), str(stats),
                 "--out", str(again)]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(again / "study_cost_projection.csv"),
                                  pd.read_csv(out / "study_cost_projection.csv"))
    pd.testing.assert_frame_equal(pd.read_csv(again / "study_cost_totals.csv"), totals)


def test_study_cost_cli_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys):
    from benchmarks.study_cost import main

    tables = _study_tables(tmp_path)
    out = tmp_path / "out"
    # ciao etc. have no statistics to scale from
    rc = main(["--tables", str(tables), "--config", str(ROOT / "config/paper.yaml"), "--stats", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "no measurement to project" in err
    assert not out.exists()
    (tables / "efficiency.csv").unlink()
    assert main(["--tables", str(tables), "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == f"study_cost: error: {tables / 'efficiency.csv'}: file not found"
    assert main(["--tables", str(_study_tables(tmp_path / "x")), "--epochs", "zero", "--out", str(out)]) == 2
    assert "--epochs: 'zero'" in capsys.readouterr().err and not out.exists()
