"""The reference study's tools: saving finished results in parts, restoring them, and the
pre-registered pick of the Epinions baselines (benchmarks/reference)."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks.reference import pick_epinions, progress, publish, rerun_check, snapshot, targets

ROOT = Path(__file__).resolve().parents[1]


def _job(work: Path, stage_dir: str, bench_stage: str, rel: str, bench: bool = True, per_user: bool = True):
    result = work / "results" / stage_dir / f"{rel}.json"
    result.parent.mkdir(parents=True, exist_ok=True)
    result.write_text("{}")
    if per_user:
        result.with_name(result.stem + ".per_user.npz").write_bytes(b"pu")
    if bench:
        b = work / "benchmarks" / "runs" / bench_stage / f"{rel}.tsv"
        b.parent.mkdir(parents=True, exist_ok=True)
        b.write_text("s\n1\n")
    return result


def test_save_packs_finished_jobs_once_and_restore_makes_them_up_to_date(tmp_path):
    work, parts = tmp_path / "work", tmp_path / "parts"
    _job(work, "runs", "train", "ciao/ew/seed0")
    (work / "results/runs/ciao/ew/seed0.emb.npz").write_bytes(b"big")          # temp: left out
    _job(work, "tune", "tune", "ciao/ew/train.lr=0.001/seed100")
    (work / "results/tune/ciao/ew/selected.yaml").write_text("train: {}\n")
    _job(work, "ablation", "ablation", "ciao/pmtrec-none/seed0", bench=False)  # still running
    _job(work, "runs", "train", "ciao/pmtrec/seed0", per_user=False)           # still running
    (work / "results/analysis/probes/ciao/ew").mkdir(parents=True)
    (work / "results/analysis/probes/ciao/ew/seed0.json").write_text("{}")
    (work / "results/checkpoints/train").mkdir(parents=True)
    (work / "results/checkpoints/train/x.pt").write_bytes(b"ck")

    first = snapshot.save(work, parts)
    assert first == parts / "part-000.tar.xz"
    listed = (parts / "part-000.txt").read_text().split()
    assert sorted(listed) == sorted([
        "results/runs/ciao/ew/seed0.json", "results/runs/ciao/ew/seed0.per_user.npz",
        "benchmarks/runs/train/ciao/ew/seed0.tsv",
        "results/tune/ciao/ew/train.lr=0.001/seed100.json", "results/tune/ciao/ew/train.lr=0.001/seed100.per_user.npz",
        "benchmarks/runs/tune/ciao/ew/train.lr=0.001/seed100.tsv", "results/tune/ciao/ew/selected.yaml",
        "results/analysis/probes/ciao/ew/seed0.json"])
    assert snapshot.save(work, parts) is None                                   # nothing new
    # The running ablation finishes: the next part holds only its files.
    b = work / "benchmarks/runs/ablation/ciao/pmtrec-none/seed0.tsv"
    b.parent.mkdir(parents=True)
    b.write_text("s\n2\n")
    assert snapshot.save(work, parts) == parts / "part-001.tar.xz"
    assert (parts / "part-001.txt").read_text().split() == [
        "results/ablation/ciao/pmtrec-none/seed0.json", "results/ablation/ciao/pmtrec-none/seed0.per_user.npz",
        "benchmarks/runs/ablation/ciao/pmtrec-none/seed0.tsv"]

    fresh = tmp_path / "fresh"
    (fresh / "resources/prepared/ciao.split0").mkdir(parents=True)
    prepared = fresh / "resources/prepared/ciao.split0/data.npz"
    prepared.write_bytes(b"d")
    os.utime(prepared, (1_000_000, 1_000_000))
    assert snapshot.restore(fresh, parts) == 11
    restored = [fresh / f for f in listed] + [fresh / "results/ablation/ciao/pmtrec-none/seed0.json"]
    assert all(f.is_file() for f in restored)
    assert (fresh / "results/runs/ciao/ew/seed0.json").read_text() == "{}"
    stamps = {f.stat().st_mtime for f in restored}
    assert len(stamps) == 1 and stamps.pop() > prepared.stat().st_mtime        # one time, after the data
    assert not (fresh / "results/runs/ciao/ew/seed0.emb.npz").exists()
    assert not (fresh / "results/runs/ciao/pmtrec/seed0.json").exists()


def test_save_warns_of_finished_runs_whose_probe_has_not_run(tmp_path, capsys):
    work, parts = tmp_path / "work", tmp_path / "parts"
    for seed in (0, 1):
        _job(work, "runs", "train", f"ciao/ew/seed{seed}")
        (work / f"results/runs/ciao/ew/seed{seed}.emb.npz").write_bytes(b"big")
    (work / "results/runs/ciao/pmtrec").mkdir(parents=True)
    (work / "results/runs/ciao/pmtrec/seed0.emb.npz").write_bytes(b"half")  # still running: no JSON
    (work / "results/analysis/probes/ciao/ew").mkdir(parents=True)
    (work / "results/analysis/probes/ciao/ew/seed0.json").write_text("{}")
    assert snapshot.unprobed(work) == ["results/runs/ciao/ew/seed1.emb.npz"]
    assert snapshot.main(["save", "--workdir", str(work), "--parts", str(parts)]) == 0
    err = capsys.readouterr().err
    assert "1 finished main runs have no probe yet (e.g. results/runs/ciao/ew/seed1.emb.npz)" in err
    (work / "results/analysis/probes/ciao/ew/seed1.json").write_text("{}")
    assert snapshot.unprobed(work) == []


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def test_commit_commits_the_new_parts_only_and_leaves_other_staged_work_staged(tmp_path, monkeypatch):
    for key in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{key}_NAME", "t")
        monkeypatch.setenv(f"GIT_{key}_EMAIL", "t@t")
    repo, work = tmp_path / "repo", tmp_path / "work"
    parts = repo / "reports/reference/runs"
    _git(tmp_path, "init", "-q", str(repo))
    (repo / "other.txt").write_text("mine\n")
    _git(repo, "add", "other.txt")                                               # someone's staged work
    _job(work, "runs", "train", "ciao/ew/seed0")
    snapshot.save(work, parts)
    assert snapshot.commit(parts) == "reference study: saved results part-000"
    assert sorted(_git(repo, "show", "--name-only", "--format=", "HEAD").split()) == [
        "reports/reference/runs/part-000.tar.xz", "reports/reference/runs/part-000.txt"]
    assert _git(repo, "diff", "--cached", "--name-only").split() == ["other.txt"]  # still staged
    assert snapshot.commit(parts) is None                                        # nothing new
    _job(work, "runs", "train", "ciao/ew/seed1")
    snapshot.save(work, parts)
    assert snapshot.commit(parts) == "reference study: saved results part-001"


def test_watch_saves_while_the_workdir_is_locked_and_once_after(tmp_path, monkeypatch):
    work = tmp_path / "work"
    locks = work / ".snakemake/locks"
    locks.mkdir(parents=True)
    (locks / "0.input.lock").write_text("")
    assert snapshot.running(work)
    clock = [0.0]
    monkeypatch.setattr(snapshot.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(snapshot.time, "sleep", lambda s: clock.__setitem__(0, clock[0] + s))
    saved = []

    def save_once(args):
        saved.append(clock[0])
        if len(saved) == 3:                                                      # the run ends
            (locks / "0.input.lock").unlink()

    calls = snapshot.watch(argparse.Namespace(workdir=work, every=30), save_once, poll=10.0)
    assert saved == [1800.0, 3600.0, 5400.0, 5400.0] and calls == 4
    assert not snapshot.running(work) and not snapshot.running(tmp_path / "none")


def test_the_rerun_check_tells_a_reproduced_run_from_one_that_differs(tmp_path, capsys):
    import json

    work, parts = tmp_path / "work", tmp_path / "parts"
    run = {"valid": {"overall": {"ndcg@20": 0.03}}, "test": {"overall": {"ndcg@20": 0.02}}, "best_epoch": 5,
           "epochs_run": 25, "stopped_by": "patience", "wall_time_s": 60.0, "pid": 1,
           "curves": [{"epoch": 1, "train_time_s": 2.5, "valid": {}, "loss": {"rec": 0.69}}],
           "embeddings": {"sha256": "ab"}}
    for seed in (0, 1, 2):
        _job(work, "runs", "train", f"ciao/ew/seed{seed}").write_text(json.dumps(run))
    snapshot.save(work, parts)
    timing = dict(run, wall_time_s=61.0, pid=2, curves=[dict(run["curves"][0], train_time_s=2.7)])
    (work / "results/runs/ciao/ew/seed1.json").write_text(json.dumps(timing))          # reproduces
    drift = dict(timing, test={"overall": {"ndcg@20": 0.021}}, embeddings={"sha256": "cd"})
    (work / "results/runs/ciao/ew/seed2.json").write_text(json.dumps(drift))           # does not
    assert rerun_check.check(work, parts) == (3, 2, [("results/runs/ciao/ew/seed2.json", ["test", "embeddings"])])
    assert rerun_check.main(["--workdir", str(work), "--parts", str(parts)]) == 1
    out = capsys.readouterr().out
    assert "seed2.json: differs in test, embeddings" in out and "3 saved main runs, 2 trained again, 1 reproduce" in out
    (work / "results/runs/ciao/ew/seed2.json").write_text(json.dumps(timing))
    assert rerun_check.main(["--workdir", str(work), "--parts", str(parts)]) == 0


def test_the_priority_targets_hold_every_main_run_its_probes_the_maps_and_the_control():
    import yaml

    from pmtrec.study import load_study
    from pmtrec.study.paths import probe_path, run_path

    study = load_study(yaml.safe_load((ROOT / "config" / "reference.yaml").read_text()),
                       str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))
    got = targets.priority_targets(study)
    assert len(got) == len(set(got))
    assert run_path("epinions", "mostpop", 4) in got and probe_path("epinions", "mostpop", 4) not in got
    assert probe_path("ciao-cold", "pmtrec", 0) in got and probe_path("epinions", "uw", 0) not in got
    assert "results/analysis/maps/lastfm.csv" in got
    shuffled = [t for t in got if "/ablation/" in t]
    assert len(shuffled) == 4 * 5 and all("/pmtrec-shuffled/" in t for t in shuffled)
    main_runs = sum(len(study.methods_of(d)) for d in study.datasets) * len(study.seeds)
    probes = sum(len(study.embedded_methods(d)) for d in study.datasets) * len(study.seeds)
    assert len(got) == main_runs + probes + len(study.map_datasets()) + 20


def test_progress_counts_the_saved_files_of_the_plan_per_dataset_and_stage(capsys):
    import yaml

    from pmtrec.study import load_study
    from pmtrec.study.paths import probe_path, run_path, tune_path

    study = load_study(yaml.safe_load((ROOT / "config" / "reference.yaml").read_text()),
                       str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))
    point = next(iter(study.points["ew"]))
    done = {run_path("ciao", "ew", 0), run_path("ciao", "ew", 1), probe_path("ciao", "ew", 0),
            run_path("epinions", "mostpop", 0), tune_path("lastfm", "ew", point, 100), "results/runs/x/y/seed0.json"}
    table = progress.progress(study, done)
    assert table.index.tolist() == ["ciao", "amazon-hin", "lastfm", "epinions", "ciao-cold", "all"]
    assert table.columns.tolist() == ["tune", "main", "probe", "ablation", "sensitivity"]
    assert table.loc["ciao", "main"] == "2/105" and table.loc["ciao", "probe"] == "1/100"
    assert table.loc["epinions", "main"] == "1/40" and table.loc["lastfm", "tune"] == "1/80"
    assert table.loc["all", "main"] == "3/375" and table.loc["ciao-cold", "ablation"] == "–"
    assert table.loc["ciao", "sensitivity"] == "0/27" and table.loc["epinions", "sensitivity"] == "–"
    md = progress.markdown(table).splitlines()
    assert md[0] == "| dataset | tune | main | probe | ablation | sensitivity |" and md[2].startswith("| ciao | 0/80 | 2/105 |")


def test_the_cpu_hours_left_price_each_missing_job_at_its_method_stage_and_dataset_mean(tmp_path):
    from benchmarks.study_cost import load_plan
    from pmtrec.study.paths import run_path, tune_path

    study = load_plan(ROOT / "config" / "reference.yaml")
    tune = {m: [f for f in study.tune_runs() if f"/ciao-cold/{m}/" in f] for m in ("single", "ew", "pmtrec")}
    assert [len(v) for v in tune.values()] == [4, 4, 4]
    seconds = {progress.bench_of(f): 1800.0 for f in tune["single"]}   # single tuned in 0.5 h a job
    seconds |= {progress.bench_of(f): 3600.0 for f in tune["ew"][:2]}  # ew: half its tuning, 1 h a job
    seconds[progress.bench_of(run_path("ciao-cold", "mostpop", 0))] = 36.0
    seconds[progress.bench_of(run_path("ciao-cold", "single", 0))] = 7200.0
    assert progress.bench_of(tune_path("d", "m", "p=1", 100)) == "benchmarks/runs/tune/d/m/p=1/seed100.tsv"
    assert progress.bench_of(run_path("d", "m", 3)) == "benchmarks/runs/train/d/m/seed3.tsv"
    done = set(tune["single"]) | set(tune["ew"][:2]) | {run_path("ciao-cold", "mostpop", 0),
                                                         run_path("ciao-cold", "single", 0)}
    left = progress.remaining_hours(study, done, seconds)
    # tuning: ew 2 x 1 h, pmtrec (nothing measured) 4 x the tuning mean 2400 s; main: mostpop 4 x 36 s,
    # single 4 x 2 h, ew 5 x its tuning's 1 h, pmtrec 5 x 2400 s; the probe of single seed 0 retrains it (2 h)
    expected = (2 * 3600 + 4 * 2400 + 4 * 36 + 4 * 7200 + 5 * 3600 + 5 * 2400 + 7200) / 3600
    assert left["ciao-cold"] == pytest.approx(expected)
    # nothing measured on the other datasets: unknown, not free
    assert np.isnan(left["ciao"]) and np.isnan(left["all"]) and left.index.tolist()[-1] == "all"
    kept = progress.remaining_hours(study, done, seconds, tables={run_path("ciao-cold", "single", 0)})
    assert kept["ciao-cold"] == pytest.approx(expected - 2.0)  # its embedding tables exist: no retraining
    # measured seconds come from the saved parts' benchmark files and the workflow folder's
    bench = tmp_path / "work" / "benchmarks" / "runs" / "train" / "ciao" / "ew" / "seed0.tsv"
    bench.parent.mkdir(parents=True)
    bench.write_text("s\th:m:s\tmax_rss\n12.5\t0:00:12\t100\n")
    _job(tmp_path / "old", "runs", "train", "lastfm/single/seed1")  # a saved job, measured at 1 s
    snapshot.save(tmp_path / "old", tmp_path / "parts")
    assert progress.measured_seconds(tmp_path / "parts", tmp_path / "work") == \
        {"benchmarks/runs/train/ciao/ew/seed0.tsv": 12.5, "benchmarks/runs/train/lastfm/single/seed1.tsv": 1.0}


def test_the_pick_ranks_per_dataset_then_by_mean_rank_and_score():
    frame = pd.DataFrame([
        ("ciao", "uw", 0.050), ("ciao", "dwa", 0.049), ("ciao", "famo", 0.048), ("ciao", "rlw", 0.047),
        ("lastfm", "uw", 0.20), ("lastfm", "dwa", 0.22), ("lastfm", "famo", 0.21), ("lastfm", "rlw", 0.19),
    ], columns=["dataset", "method", "score"])
    table = pick_epinions.rank(frame)
    # uw ranks 1 and 3 (mean 2), dwa 2 and 1 (1.5), famo 3 and 2 (2.5), rlw 4 and 4.
    assert table["method"].tolist() == ["dwa", "uw", "famo", "rlw"]
    assert table["mean_rank"].tolist() == [1.5, 2.0, 2.5, 4.0]
    assert table["picked"].tolist() == [True, True, True, False]
    # A tie in mean rank goes to the higher mean score.
    tie = pd.DataFrame([("a", "x", 0.1), ("a", "y", 0.2), ("b", "x", 0.9), ("b", "y", 0.3)],
                       columns=["dataset", "method", "score"])
    assert pick_epinions.rank(tie)["method"].tolist() == ["x", "y"]


def test_the_pick_fills_the_epinions_methods_of_the_reference_config(tmp_path):
    config = tmp_path / "reference.yaml"
    shutil.copy(ROOT / "config" / "reference.yaml", config)
    pick_epinions.write_config(["dbmtl", "uw", "famo"], config)
    import yaml

    cfg = yaml.safe_load(config.read_text())
    assert cfg["datasets"]["epinions"]["methods"] == ["mostpop", "single", "ew", "dbmtl", "uw", "famo", "pmtrec",
                                                      "static-schedule"]
    assert cfg["datasets"]["ciao-cold"]["methods"] == ["mostpop", "single", "ew", "pmtrec"]
    assert "# Epinions (3.5x" in config.read_text()                           # comments kept


def test_the_pick_refuses_unfinished_tuning(tmp_path):
    with pytest.raises(SystemExit, match="tuning run not finished"):
        pick_epinions.scores(tmp_path)


def _tables(tmp_path: Path) -> Path:
    tables = tmp_path / "tables"
    tables.mkdir()
    rows = []
    for method, values in (("pmtrec", [0.050, 0.052, 0.051]), ("ew", [0.048, 0.050, 0.049]),
                           ("single", [0.040, 0.041, 0.042])):
        v = np.array(values)
        rows.append({"kind": "main", "dataset": "ciao", "method": method, "variant": "", "split": "test",
                     "metric": "ndcg@20", "mean": v.mean(), "std": v.std(ddof=1), "n": 3})
    pd.DataFrame(rows).to_csv(tables / "summary.csv", index=False)
    pd.DataFrame([{"dataset": "ciao", "metric": "ndcg@20", "baseline": "ew"}]).to_csv(tables / "significance.csv",
                                                                                   index=False)
    pd.DataFrame([{"dataset": "ciao", "method": m, "metric": "ndcg@20", "diff": d, "ci_low": d - 0.001,
                   "ci_high": d + 0.001, "p_holm": 0.01, "verdict": "supported"}
                  for m, d in (("ew", 0.002), ("single", 0.010))]).to_csv(tables / "comparisons.csv", index=False)
    pd.DataFrame([{"claim": 1, "claim_text": "PMTRec beats", "dataset": "ciao", "metric": "ndcg@20",
                   "verdict": "supported"},
                  {"claim": 4, "claim_text": "overhead small", "dataset": "ciao", "metric": np.nan,
                   "verdict": "contradicted"}]).to_csv(tables / "claims.csv", index=False)
    pd.DataFrame([{"dataset": "ciao", "kind": k, "device": "cpu (x86_64, 1 thread)", "bench_cpu_time_s": s} for k, s in
                  (("main", 3600.0), ("main", 1800.0), ("tune", 7200.0))]).to_csv(tables / "efficiency.csv",
                                                                                 index=False)
    return tables


def test_the_headline_reads_the_tables_and_the_readme_section_is_replaced(tmp_path):
    from scipy import stats

    tables = _tables(tmp_path)
    head = publish.headline(tables)
    assert head["method"].tolist() == ["pmtrec", "ew", "single"]
    assert head["role"].tolist() == ["PMTRec", "best tuned baseline, EW", "single"]  # ew once, both roles
    half = stats.t.ppf(0.975, 2) * 0.001 / np.sqrt(3)                                 # std 0.001 over 3 seeds
    assert head.loc[0, "mean"] == pytest.approx(0.051)
    assert head.loc[0, "ci_low"] == pytest.approx(0.051 - half) and head.loc[0, "ci_high"] == pytest.approx(0.051 + half)
    assert head.loc[1, "diff"] == pytest.approx(0.002) and head.loc[1, "verdict"] == "supported"
    cost = publish.cpu_hours(tables)
    assert cost.set_index("dataset").loc["ciao", ["main", "tune", "total"]].tolist() == [1.5, 2.0, 3.5]
    body = publish.results_markdown(head, pd.read_csv(tables / "claims.csv"), cost)
    assert "| ciao | ew (best tuned baseline) | 0.0490 [" in body
    assert "1. *PMTRec beats*: ciao: supported." in body and "4. *overhead small*: ciao: contradicted." in body
    assert "cost 3.5 CPU-hours (ciao 3.5;" in body
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n{publish.START}\nold\n{publish.END}\nafter\n")
    publish.write_readme(body, readme)
    text = readme.read_text()
    assert "old" not in text and text.endswith(f"{publish.END}\nafter\n") and body in text
    readme.write_text("# no markers\n")
    with pytest.raises(SystemExit, match="markers"):
        publish.write_readme(body, readme)


def test_the_reference_readme_names_the_commit_config_cost_and_the_rerun_check(tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    (work / "config").mkdir(parents=True)
    (work / "STUDY_COMMIT").write_text("abc123\n")
    (work / "config/reference.yaml").write_text("seeds: [0]\n")
    shutil.copytree(_tables(tmp_path), out / "tables")
    (out / "runs").mkdir()
    (out / "runs/part-000.tar.xz").write_bytes(b"x" * 2**20)
    text = publish.reference_readme(work, out, publish.cpu_hours(out / "tables"))
    import hashlib

    assert "commit `abc123`" in text
    assert f"SHA-256 `{hashlib.sha256(b'seeds: [0]' + bytes([10])).hexdigest()[:16]}...`" in text
    assert "`cpu (x86_64, 1 thread)`" in text and "Training jobs: 3 (2 main, 1 tune)." in text
    assert "| ciao | 1.50 | 2.00 | 3.50 |" in text and "| all | 1.50 | 2.00 | 3.50 |" in text
    assert "(1 parts, 1.0 MB;" in text
    assert "pmtrec compare reports/reference/tables DIR/results/tables" in text


PUBLISHED = ROOT / "reports" / "reference" / "tables" / "summary.csv"


@pytest.mark.skipif(not PUBLISHED.is_file(), reason="the reference study is not published yet")
def test_the_published_reference_passes_compare_against_itself_and_fails_when_perturbed(tmp_path):
    from pmtrec.cli import main as cli

    assert cli(["compare", str(PUBLISHED), str(PUBLISHED)]) == 0
    summary = pd.read_csv(PUBLISHED)
    row = summary[(summary["kind"] == "main") & (summary["split"] == "test") & (summary["metric"] == "ndcg@20")
                  & (summary["std"] > 0)].index[0]
    summary.loc[row, "mean"] += 5 * summary.loc[row, "std"]       # far outside its interval
    perturbed = tmp_path / "summary.csv"
    summary.to_csv(perturbed, index=False)
    assert cli(["compare", str(PUBLISHED), str(perturbed)]) == 3


def test_the_confirmation_reads_the_finished_runs_with_their_seed_intervals(tmp_path):
    import json

    from scipy import stats

    from benchmarks.reference import confirmation
    from tests.synthetic_study import fake_result

    work = tmp_path / "work"
    quality = {"pmtrec": 1.0, "ew": 0.9, "gradnorm": 0.95, "uw": 0.85, "single": 0.8, "static-schedule": 0.99,
               "pmtrec-shuffled": 0.92}
    for seed in range(5):
        for method, q in quality.items():
            stage, folder = ("ablation", "ablation") if method == "pmtrec-shuffled" else ("main", "runs")
            r = fake_result("ciao", method, seed, q)
            r["labels"] = {"stage": stage, "dataset": "ciao", "seed": seed}
            path = work / "results" / folder / "ciao" / method / f"seed{seed}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(r))
    assert confirmation.main(["--workdir", str(work), "--out", str(tmp_path / "out")]) == 0
    table = pd.read_csv(tmp_path / "out" / "reference_confirmation.csv")
    test = table[(table["split"] == "test") & (table["metric"] == "ndcg@20")].set_index("role")
    # A control is never the best tuned baseline (static-schedule is the best here); gradnorm beats the rest.
    assert test.loc["best tuned baseline", "method"] == "gradnorm"
    assert sorted(test.loc["control", "method"]) == ["pmtrec-shuffled", "static-schedule"]
    values = [fake_result("ciao", "ew", s, 0.9)["test"]["overall"]["ndcg@20"] for s in range(5)]
    half = stats.t.ppf(0.975, 4) * np.std(values, ddof=1) / np.sqrt(5)
    ew = test.loc["EW"]
    assert ew["n"] == 5 and ew["mean"] == pytest.approx(np.mean(values))
    assert (ew["ci_low"], ew["ci_high"]) == pytest.approx((np.mean(values) - half, np.mean(values) + half))
    assert set(table["split"]) == {"valid", "test"} and set(table["metric"]) == {"ndcg@20", "recall@20"}
    # The synthetic PMTRec gives its least active users the most auxiliary weight on every seed.
    lean = pd.read_csv(tmp_path / "out" / "reference_confirmation_weights.csv").iloc[0]
    assert lean["dataset"] == "ciao" and lean["n_seeds"] == 5 and lean["aux_least"] > lean["aux_most"]
    assert bool(lean["flag"]) is True


def test_the_confirmation_without_finished_runs_is_a_one_line_error(tmp_path):
    from benchmarks.reference import confirmation

    with pytest.raises(SystemExit, match="no finished main run"):
        confirmation.main(["--workdir", str(tmp_path)])


def _published(tmp_path: Path) -> Path:
    """A published reference study as publish writes it: tables, headline, cost and two report
    sections built by the report's own code."""
    from pmtrec.report import Section, claims as claims_section, personalization

    ref = tmp_path / "reports" / "reference"
    ref.mkdir(parents=True)
    tables = shutil.copytree(_tables(tmp_path), ref / "tables")
    comparisons = pd.read_csv(tables / "comparisons.csv")
    control = {"dataset": "ciao", "method": "pmtrec-shuffled", "metric": "ndcg@20", "diff": 0.0001, "ci_low": -0.001,
               "ci_high": 0.001, "p_holm": 0.9, "verdict": "equivalent"}
    pd.concat([comparisons, pd.DataFrame([control])]).to_csv(tables / "comparisons.csv", index=False)
    # seed-paired runs: ew leads on validation, pmtrec on test; mostpop and the control lead validation
    # but are not multi-task methods
    values = {"single": ([0.060, 0.061, 0.062], [0.040, 0.041, 0.042]), "ew": ([0.070, 0.071, 0.072], [0.048, 0.050, 0.049]),
              "pmtrec": ([0.065, 0.066, 0.067], [0.050, 0.052, 0.051]), "mostpop": ([0.09] * 3, [0.01] * 3),
              "static-schedule": ([0.08] * 3, [0.03] * 3)}
    rows = [{"kind": "main", "dataset": "ciao", "method": m, "variant": "", "seed": s, "split": split,
             "metric": "ndcg@20", "value": v[i][s]} for m, v in values.items() for s in range(3)
            for i, split in enumerate(("valid", "test"))]
    rows.append({**rows[0], "variant": "cold", "method": "ew", "value": 0.9})  # another setting: left out
    pd.DataFrame(rows).to_csv(tables / "runs.csv", index=False)
    groups = [{"kind": "main", "dataset": "ciao", "method": m, "variant": "", "seed": s, "split": "test", "group": g,
               "n_users": 100 * (g + 1), "metric": "ndcg@20", "value": base + 0.01 * g + 0.001 * s * (m == "ew")}
              for m, base in (("single", 0.04), ("ew", 0.05)) for g in (1, 0) for s in range(3)]
    pd.DataFrame(groups).to_csv(tables / "groups.csv", index=False)
    publish.headline(tables).to_csv(ref / "headline.csv", index=False)
    publish.cpu_hours(tables).to_csv(ref / "cpu_hours.csv", index=False)
    claims = pd.read_csv(tables / "claims.csv")
    sec = Section(ref / "sections" / "00_claims", "Claims", order=0)
    for claim in sorted(claims["claim"].unique()):
        t, reading = claims_section.claim_table(claims, claim)
        sec.table(t, f"Claim {claim}.", reading, name=f"claim-{claim}")
    t, reading = claims_section.controls_table(pd.read_csv(tables / "comparisons.csv"))
    sec.table(t, "Controls.", reading, name="controls")
    sec.save()
    weights = pd.DataFrame([{"dataset": "ciao", "method": "pmtrec", "kind": "main", "seed": s, "epoch": 5,
                             "table": "user", "group": g, "task": task, "weight": w}
                            for s in range(3) for g, (rec, social) in enumerate(((0.6, 0.4), (0.8, 0.2)))
                            for task, w in (("rec", rec), ("social", social))])
    final = personalization.final_row_weights(weights, "ciao")
    sec = Section(ref / "sections" / "04_personalization", "Personalization", order=4)
    sec.figure(personalization.row_weight_plot(final), "Row weights on ciao.",
               personalization.row_weight_reading(final, "ciao"), name="row-weights-ciao")
    sec.save()
    return ref


def test_findings_repeat_the_reports_readings_and_pair_negative_transfer_by_seed(tmp_path):
    from scipy import stats

    from benchmarks.reference import findings

    ref = _published(tmp_path)
    nt = findings.negative_transfer(pd.read_csv(ref / "tables" / "runs.csv"), pd.read_csv(ref / "headline.csv"))
    # the headline's multi-task methods (pmtrec, ew), and the best by validation: ew (not mostpop or the control)
    assert nt["method"].tolist() == ["pmtrec", "ew"] and nt["best_by_validation"].tolist() == [False, True]
    ew = nt.set_index("method").loc["ew"]
    half = stats.t.ppf(0.975, 2) * 0.001 / np.sqrt(3)         # test differences 0.008, 0.009, 0.007
    assert ew["test_diff"] == pytest.approx(0.008) and ew["test_low"] == pytest.approx(0.008 - half)
    assert ew["valid_diff"] == pytest.approx(0.010) and ew["valid_low"] == pytest.approx(0.010)  # no spread
    assert ew["n_seeds"] == 3
    g = findings.group_transfer(pd.read_csv(ref / "tables" / "groups.csv"), "ciao", "ew")
    assert g["group"].tolist() == ["0", "1"] and g["n_users"].tolist() == [100, 200]
    assert g["diff"].tolist() == pytest.approx([0.011, 0.011])   # 0.01 + 0.001 * mean seed

    doc = tmp_path / "docs" / "findings.md"
    doc.parent.mkdir()
    doc.write_text(f"# Findings\n\nintro\n{findings.START}\nSTALE-BLOCK\n{findings.END}\n## Discussion\n\nby hand\n")
    totals = tmp_path / "totals.csv"
    pd.DataFrame([{"stage": "tune", "jobs": 900, "cpu_h": 80.0, "wall_h": 20.0},
                  {"stage": "total", "jobs": 1000, "cpu_h": 100.0, "wall_h": 25.0}]).to_csv(totals, index=False)
    findings.write(findings.generate(ref, totals, "python -m benchmarks.study_cost --cores 4", doc.parent), doc)
    text = doc.read_text()
    assert text.startswith("# Findings\n\nintro\n") and text.endswith(f"{findings.END}\n## Discussion\n\nby hand\n")
    assert "STALE-BLOCK" not in text
    claims_json = (ref / "sections" / "00_claims" / "section.json").read_text()
    import json

    items = {i["id"]: i for i in json.loads(claims_json)["items"]}
    assert items["claim-1"]["reading"] in text and items["controls"]["reading"] in text
    assert "| ciao | ndcg@20 | **supported** |" in text.lower()
    assert "([figure](../reports/reference/sections/04_personalization/fig_row-weights-ciao.svg))" in text
    assert "the main task's weight on the rows of the least active users is 0.600" in text
    assert f"| ciao | ew (best by validation) | +0.0100 [+0.0100, +0.0100] | +0.0080 [{0.008 - half:+.4f}, {0.008 + half:+.4f}] " \
           "| multi-task better | 3 |" in text
    assert "On ciao, no multi-task method shown is below `single`; above `single`: pmtrec, ew" in text
    assert "| 1 (least active) | 100 | +0.0110 [" in text and "| 2 (most active) | 200 | +0.0110 [" in text
    assert "(`python -m benchmarks.study_cost --cores 4`), at 4 one-thread jobs at once" in text
    assert "| tune | 900 | 80.0 | 20.0 |" in text and "| ciao | 1.50 | 2.00 | 3.50 |" in text
    assert "1. *PMTRec beats*: ciao: supported." in text   # publish's headline block, the same text


def test_findings_without_a_published_study_or_markers_is_a_one_line_error(tmp_path):
    from benchmarks.reference import findings

    with pytest.raises(SystemExit, match=r"^findings: .*headline.csv: file not found"):
        findings.generate(tmp_path)
    ref = _published(tmp_path)
    (ref / "sections" / "04_personalization" / "section.json").unlink()
    with pytest.raises(SystemExit, match=r"04_personalization/section.json: file not found"):
        findings.generate(ref)
    doc = tmp_path / "f.md"
    doc.write_text("# no markers\n")
    with pytest.raises(SystemExit, match="markers"):
        findings.write("x\n", doc)
    assert doc.read_text() == "# no markers\n"


def test_publish_copies_the_report_tables_and_each_sections_tables_figures_and_json(tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    (work / "reports").mkdir(parents=True)
    (work / "reports" / "pmtrec_report.pdf").write_bytes(b"%PDF")
    (work / "results" / "tables").mkdir(parents=True)
    (work / "results" / "tables" / "summary.csv").write_text("a\n1\n")
    sec = work / "results" / "report" / "00_claims"
    sec.mkdir(parents=True)
    for name in ("section.json", "tab_claim-1.csv", "tab_claim-1.tex", "fig_x.svg", "notes.txt"):
        (sec / name).write_text(name)
    with pytest.raises(SystemExit, match="no report"):
        publish.copy_artefacts(tmp_path / "empty", out)
    publish.copy_artefacts(work, out)
    assert (out / "pmtrec_report.pdf").read_bytes() == b"%PDF" and (out / "tables" / "summary.csv").is_file()
    assert sorted(p.name for p in (out / "sections" / "00_claims").iterdir()) == \
        ["fig_x.svg", "section.json", "tab_claim-1.csv", "tab_claim-1.tex"]
