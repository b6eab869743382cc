"""pmtrec.aggregate on hand-made result dicts: statistics, the significance test, validation."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pmtrec import aggregate as agg

KS = (10, 20)
TASKS = ["rec", "social"]


def metrics(base: float) -> dict:
    return {f"{m}@{k}": base * (1 + 0.1 * i) + 0.01 * j for i, m in enumerate(("recall", "ndcg", "precision", "hit"))
            for j, k in enumerate(KS)}


def make_result(method: str = "ew", seed: int = 0, valid: float = 0.1, test: float = 0.1, *, epochs: int = 2,
                rows: bool = False, dataset: str = "synthetic-tiny") -> dict:
    curves = []
    for e in range(1, epochs + 1):
        ep = {"epoch": e, "train_time_s": 0.5, "eval_time_s": 0.1, "valid": metrics(valid * e / epochs),
              "loss": {"rec": 0.7 / e, "social": 0.6 / e}, "weight": {"rec": 1.0, "social": 0.5},
              "grad_cosine": {"rec|social": 0.1 * e}}
        if rows:
            ep["row_weight_by_user_group"] = {"0": {"rec": 0.6, "social": 0.4}, "1": {"rec": 0.7, "social": 0.3}}
            ep["row_weight_by_item_group"] = {"0": {"rec": 0.5, "social": 0.5}}
        curves.append(ep)

    def evaluation(x: float) -> dict:
        return {"overall": metrics(x),
                "groups": {"0": {**metrics(x / 2), "n_users": 10}, "1": {**metrics(x * 1.5), "n_users": 12},
                           "2": {**{k: None for k in metrics(x)}, "n_users": 0}}}

    return {"schema": "pmtrec.result/1", "dataset": dataset, "method": method, "seed": seed, "tasks": TASKS,
            "valid": evaluation(valid), "test": evaluation(test), "best_epoch": epochs, "epochs_run": epochs,
            "epoch_time_s": 0.5, "wall_time_s": 1.5, "memory": {"host_peak_rss_mb": 500.0}, "device": "cpu",
            "curves": curves, "config": {"train": {"method": method}}, "config_hash": "abc", "version": "0.1.0",
            "git_commit": "unknown"}


def entry(kind: str, method: str, seed: int, dataset: str = "tiny", setting: str = "", **extra) -> dict:
    path = f"results/{kind}/{dataset}/{method}/{setting or 'main'}/seed{seed}.json"
    return {"kind": kind, "dataset": dataset, "method": method, "seed": seed, "setting": setting, "path": path,
            **extra}


def study(seeds=(0, 1, 2)):
    """pmtrec beats ew; uw has the best validation NDCG among the baselines; mostpop and a pmtrec
    variant have even higher validation scores but never count as the best baseline."""
    rng = np.random.default_rng(0)
    entries, results = [], {}
    plan = {"pmtrec": (0.30, 0.30), "ew": (0.20, 0.25), "uw": (0.26, 0.22), "mostpop": (0.90, 0.10)}
    for method, (valid, test) in plan.items():
        for s in seeds:
            e = entry("main", method, s)
            entries.append(e)
            results[e["path"]] = make_result(method, s, valid + 0.001 * s, test + rng.normal(0, 0.01),
                                             rows=method == "pmtrec")
    for s in seeds:
        e = entry("ablation", "pmtrec-no-focus", s)
        entries.append(e)
        results[e["path"]] = make_result("pmtrec-no-focus", s, 0.95, 0.28)
    return entries, results


def test_summary_means_and_stds():
    entries, results = study()
    tables = agg.aggregate(entries, results=results)
    runs, summary = tables["runs"], tables["summary"]
    assert set(runs.columns) >= {"kind", "dataset", "method", "variant", "seed", "split", "metric", "value"}
    assert len(runs) == len(entries) * 2 * len(metrics(0))
    values = [results[e["path"]]["test"]["overall"]["ndcg@20"] for e in entries
              if e["method"] == "uw" and e["kind"] == "main"]
    row = summary[(summary["method"] == "uw") & (summary["split"] == "test") & (summary["metric"] == "ndcg@20")]
    assert len(row) == 1
    assert row["mean"].item() == pytest.approx(np.mean(values))
    assert row["std"].item() == pytest.approx(np.std(values, ddof=1))
    assert row["n"].item() == 3


def test_std_is_nan_for_one_seed():
    entries, results = study(seeds=(0,))
    summary = agg.aggregate(entries, results=results)["summary"]
    assert summary["std"].isna().all() and (summary["n"] == 1).all()


def test_significance_against_best_baseline_by_validation():
    entries, results = study()
    sig = agg.aggregate(entries, results=results, wilcoxon_min_n=6)["significance"]
    assert set(sig["baseline"]) == {"uw"}  # not mostpop (excluded), not the variant, not ew (lower valid)
    assert len(sig) == len(metrics(0))
    row = sig[sig["metric"] == "ndcg@20"].iloc[0]
    ref = [results[e["path"]]["test"]["overall"]["ndcg@20"] for e in entries if e["method"] == "pmtrec"]
    base = [results[e["path"]]["test"]["overall"]["ndcg@20"] for e in entries if e["method"] == "uw"]
    t = stats.ttest_rel(ref, base)
    assert row["t_stat"] == pytest.approx(t.statistic)
    assert row["t_pvalue"] == pytest.approx(t.pvalue)
    assert row["mean_reference"] == pytest.approx(np.mean(ref))
    assert row["rel_improvement"] == pytest.approx((np.mean(ref) - np.mean(base)) / np.mean(base))
    assert row["n"] == 3 and math.isnan(row["wilcoxon_pvalue"])  # fewer than 6 pairs
    assert bool(row["significant"]) == (t.pvalue < 0.05)


def test_wilcoxon_from_min_n_pairs():
    entries, results = study(seeds=range(6))
    sig = agg.aggregate(entries, results=results, wilcoxon_min_n=6)["significance"]
    row = sig[sig["metric"] == "recall@20"].iloc[0]
    ref = [results[e["path"]]["test"]["overall"]["recall@20"] for e in entries if e["method"] == "pmtrec"]
    base = [results[e["path"]]["test"]["overall"]["recall@20"] for e in entries if e["method"] == "uw"]
    w = stats.wilcoxon(ref, base)
    assert row["n"] == 6
    assert row["wilcoxon_stat"] == pytest.approx(w.statistic)
    assert row["wilcoxon_pvalue"] == pytest.approx(w.pvalue)


def test_pairs_only_common_seeds():
    entries, results = study()
    entries = [e for e in entries if not (e["method"] == "uw" and e["seed"] == 2)]
    sig = agg.aggregate(entries, results=results)["significance"]
    assert (sig["n"] == 2).all()


def test_ablation_deltas_against_the_full_model():
    entries, results = study()
    abl = agg.aggregate(entries, results=results)["ablation"]
    assert set(abl["method"]) == {"pmtrec", "pmtrec-no-focus"}
    full = abl[(abl["method"] == "pmtrec") & (abl["split"] == "test") & (abl["metric"] == "ndcg@20")].iloc[0]
    var = abl[(abl["method"] == "pmtrec-no-focus") & (abl["split"] == "test") & (abl["metric"] == "ndcg@20")].iloc[0]
    assert full["delta"] == 0
    assert var["delta"] == pytest.approx(var["mean"] - full["mean"])
    assert var["rel_delta"] == pytest.approx((var["mean"] - full["mean"]) / full["mean"])


def test_groups_curves_row_weights_cosines():
    entries, results = study(seeds=(0,))
    t = agg.aggregate(entries, results=results)
    g = t["groups"]
    assert set(g["group"]) == {"0", "1", "2"} and (g["split"] == "test").all()
    assert g[g["group"] == "2"]["value"].isna().all() and (g[g["group"] == "2"]["n_users"] == 0).all()
    c = t["curves"]
    pm = c[(c["method"] == "pmtrec")]
    assert set(pm["series"]) == {"valid", "loss", "weight", "time"}
    assert pm[(pm["series"] == "loss") & (pm["key"] == "rec") & (pm["epoch"] == 2)]["value"].item() == pytest.approx(0.35)
    rw = t["row_weights"]
    assert set(rw["method"]) == {"pmtrec"} and set(rw["table"]) == {"user", "item"}
    assert rw[(rw["table"] == "user") & (rw["group"] == "1") & (rw["task"] == "social") & (rw["epoch"] == 1)][
        "weight"].item() == pytest.approx(0.3)
    cos = t["cosines"]
    assert set(cos["pair"]) == {"rec|social"} and set(cos["task_a"]) == {"rec"}


def test_sensitivity_and_tuning_tables():
    entries, results = [], {}
    for tau, score in ((0.5, 0.2), (2.0, 0.3)):
        e = entry("sensitivity", "pmtrec", 0, setting=f"tau={tau}", sweep="grid", values={"tau": tau})
        entries.append(e)
        results[e["path"]] = make_result("pmtrec", 0, score, score)
        e = entry("tune", "pmtrec", 0, setting=f"tau={tau}", values={"tau": tau})
        entries.append(e)
        results[e["path"]] = make_result("pmtrec", 0, score, score)
    t = agg.aggregate(entries, results=results)
    sens = t["sensitivity"]
    assert "tau" in sens.columns and set(sens["tau"]) == {0.5, 2.0}
    tun = t["tuning"]
    assert tun.set_index("variant")["selected"].to_dict() == {"tau=0.5": False, "tau=2.0": True}


def test_select_setting_and_config_fragment():
    results = {"a.json": make_result(valid=0.2), "b.json": make_result(valid=0.3), "c.json": make_result(valid=0.3)}
    points = {"a.json": {"tau": 0.5}, "b.json": {"tau": 1.0, "train.lr": 0.01}, "c.json": {"tau": 2.0}}
    chosen, table = agg.select_setting(points, "ndcg@20", results)
    assert chosen == {"tau": 1.0, "train.lr": 0.01}  # tie with c.json: the first in file order wins
    assert table["selected"].tolist() == [False, True, False]
    frag = agg.setting_config({"tau": 9.0, "focus_max": 0.5, "train.l2": 0.0}, chosen)
    assert frag == {"train": {"method_params": {"tau": 1.0, "focus_max": 0.5}, "lr": 0.01}}


def test_efficiency_reads_the_benchmark(tmp_path):
    bench = tmp_path / "b.tsv"
    bench.write_text("s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
                     "12.5\t0:00:12\t800.5\t900\t700\t750\t1\t2\t95.0\t11.0\n")
    e = entry("main", "ew", 0, benchmark=str(bench))
    e2 = entry("main", "ew", 1, benchmark=str(tmp_path / "missing.tsv"))
    skipped = make_result(seed=1)
    skipped["skipped_batches"] = 3
    t = agg.aggregate([e, e2], results={e["path"]: make_result(), e2["path"]: skipped})["efficiency"]
    assert t["skipped_batches"].tolist() == [0, 3]  # a run that skipped non-finite batches shows it
    first = t.iloc[0]
    assert first["bench_s"] == 12.5 and first["bench_max_rss_mb"] == 800.5 and first["bench_cpu_time_s"] == 11.0
    assert first["host_peak_rss_mb"] == 500.0 and math.isnan(t.iloc[1]["bench_s"])


def test_files_written_atomically_and_read_back(tmp_path):
    entries, results = study(seeds=(0, 1))
    data = tmp_path / "prepared" / "tiny"
    data.mkdir(parents=True)
    (data / "stats.json").write_text(json.dumps({"dataset": "synthetic-tiny", "users": 10, "items": 20,
                                                 "split": {"train": 1}}))
    for e in entries:
        path = tmp_path / e["path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results[e["path"]]))
        e["path"] = str(path)
    tables = agg.aggregate(entries, {"tiny": data})
    written = agg.write_tables(tables, tmp_path / "tables")
    assert sorted(p.stem for p in written) == sorted(agg.TABLES)
    assert not [p for p in (tmp_path / "tables").iterdir() if p.suffix != ".csv"]
    stats_df = pd.read_csv(tmp_path / "tables" / "dataset_stats.csv")
    assert stats_df.to_dict("records") == [{"dataset": "tiny", "name": "synthetic-tiny", "users": 10, "items": 20}]
    summary = pd.read_csv(tmp_path / "tables" / "summary.csv")
    assert len(summary) == len(tables["summary"])


# ---- malformed results are refused with one line naming the file -----------------------------
def test_invalid_json_is_refused(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"dataset": "x", ')
    with pytest.raises(agg.AggregateError) as err:
        agg.load_result(path)
    msg = str(err.value)
    assert str(path) in msg and "not valid JSON" in msg and "\n" not in msg


@pytest.mark.parametrize("mutate, where", [
    (lambda r: r.pop("test"), "test"),
    (lambda r: r["valid"]["overall"].pop("ndcg@20"), "valid.overall"),
    (lambda r: r.__setitem__("seed", "zero"), "seed"),
    (lambda r: r["curves"][0].pop("loss"), "curves[0]"),
    (lambda r: r["test"]["overall"].__setitem__("ndcg@20", "high"), "test.overall.ndcg@20"),
    (lambda r: r["test"]["groups"]["0"].__setitem__("auc@5", 1.0), "test.groups.0"),
])
def test_schema_violations_are_refused(tmp_path, mutate, where):
    result = make_result()
    mutate(result)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(result))
    with pytest.raises(agg.AggregateError) as err:
        agg.load_result(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: malformed result") and where in msg and "\n" not in msg


def test_missing_file_and_seed_mismatch(tmp_path):
    with pytest.raises(agg.AggregateError, match="cannot read"):
        agg.load_result(tmp_path / "nope.json")
    e = entry("main", "ew", 3)
    with pytest.raises(agg.AggregateError, match="seed 0 in the file, 3 expected"):
        agg.aggregate([e], results={e["path"]: make_result(seed=0)})


def test_real_result_record_matches_the_schema():
    """The schema accepts what pmtrec.train.result_record writes (mostpop: no training, fast)."""
    from pmtrec.config import load_config
    from pmtrec.data import prepare_in_memory
    from pmtrec.train import train

    cfg = load_config(overrides=["dataset.synthetic.size=tiny", "train.method=mostpop", "train.progress=false"])
    result = json.loads(json.dumps(train(cfg, prepare_in_memory(cfg))))
    agg.validate_result(result, "mostpop")


# ---- the comparisons and claims tables (per-user files beside the results) --------------------
N_USERS = 300


def per_user_study(tmp_path, seeds=(0, 1, 2, 3, 4), with_files=True, rows=True):
    """Main runs of pmtrec (best), ew (clearly worse per user), uw (per-user ties with pmtrec
    within 0.1%), single and mostpop, an ablation variant and the control pmtrec-shuffled, each
    with its per-user file (unless ``with_files`` is false); pmtrec's epochs take 1.2x the others'."""
    from types import SimpleNamespace

    from pmtrec.training.per_user import per_user_path, write_per_user

    rng = np.random.default_rng(1)
    base_users = rng.uniform(0.05, 0.5, N_USERS)  # a user's difficulty, shared by every method
    plan = {"pmtrec": ("main", 0.30, 1.00), "ew": ("main", 0.25, 0.80), "uw": ("main", 0.30, 1.0),
            "single": ("main", 0.22, 0.75), "mostpop": ("main", 0.10, 0.30),
            "pmtrec-no-focus": ("ablation", 0.28, 0.90), "pmtrec-shuffled": ("ablation", 0.20, 0.70)}
    entries, results = [], {}
    for method, (kind, test, factor) in plan.items():
        for s in seeds:
            e = entry(kind, method, s)
            e["path"] = str(tmp_path / e["path"])
            entries.append(e)
            r = make_result(method, s, 0.2, test + 0.002 * s, rows=rows and method == "pmtrec")
            r["epoch_time_s"] = 0.6 if method == "pmtrec" else 0.5
            results[e["path"]] = r
            if not with_files:
                continue
            noise = rng.normal(0, 1e-4, N_USERS) if method == "uw" else rng.normal(0, 0.01, N_USERS)
            users = np.clip(base_users * factor + noise, 0, 1)
            write_per_user(per_user_path(e["path"]), SimpleNamespace(
                users=np.arange(N_USERS), per_user={"ndcg@20": users, "recall@20": np.clip(users * 1.2, 0, 1)}))
    return entries, results


def test_comparisons_from_per_user_files(tmp_path):
    from statsmodels.stats.multitest import multipletests

    entries, results = per_user_study(tmp_path)
    t = agg.aggregate(entries, results=results, n_resamples=499)
    c = t["comparisons"].set_index(["method", "metric"])
    # every other method of the main and ablation runs, on both metrics
    assert sorted(set(c.index.get_level_values("method"))) == sorted(
        ["ew", "uw", "single", "mostpop", "pmtrec-no-focus", "pmtrec-shuffled"])
    runs = t["runs"]
    test = runs[(runs["split"] == "test") & (runs["metric"] == "ndcg@20")].set_index(["method", "seed"])["value"]
    diffs = (test["pmtrec"] - test["ew"]).to_numpy()
    ew = c.loc[("ew", "ndcg@20")]
    assert ew["n_seeds"] == 5 and ew["n_users"] == N_USERS
    assert ew["diff"] == pytest.approx(diffs.mean())
    half = stats.t.ppf(0.975, 4) * diffs.std(ddof=1) / math.sqrt(5)
    assert (ew["ci_low"], ew["ci_high"]) == pytest.approx((diffs.mean() - half, diffs.mean() + half))
    assert ew["rel_pct"] == pytest.approx(100 * diffs.mean() / test["ew"].mean())
    # Holm over every tested row of the table
    assert c["p_holm"].to_numpy() == pytest.approx(multipletests(c["p_user"], method="holm")[1])
    assert ew["verdict"] == "supported" and ew["p_holm"] < 0.05
    assert c.loc[("uw", "ndcg@20"), "verdict"] == "equivalent"  # per-user ties within the 1% margin
    assert set(t["comparisons"]["note"].fillna("")) == {""}


def test_claims_from_the_comparisons(tmp_path):
    entries, results = per_user_study(tmp_path)
    t = agg.aggregate(entries, results=results, n_resamples=499)
    cl = t["claims"]
    c1 = cl[(cl["claim"] == 1) & (cl["metric"] == "ndcg@20")].iloc[0]
    # the existing multi-task methods only: not single (main task only), mostpop or the control
    assert c1["n_compared"] == 2 and c1["verdict"] == "equivalent" and c1["against"] == "uw"
    c2 = cl[(cl["claim"] == 2) & (cl["metric"] == "ndcg@20")].iloc[0]
    assert c2["n_compared"] == 1 and c2["against"] == "pmtrec-no-focus" and c2["verdict"] == "supported"
    c3 = cl[cl["claim"] == 3].iloc[0]  # aux weight 0.4 (least active) vs 0.3 (most active)
    assert c3["verdict"] == "supported" and c3["diff"] == pytest.approx(0.1)
    c4 = cl[cl["claim"] == 4].iloc[0]
    assert c4["verdict"] == "supported" and c4["diff"] == pytest.approx(0.6 / 0.5)
    race = set(t["headroom"]["best_method"]) | set(t["headroom"]["overall_method"])
    assert len(t["headroom"]) and race <= {"ew", "uw", "single", "oracle"}  # not PMTRec, its variants, mostpop
    t = agg.aggregate(entries, results=results, n_resamples=499, overhead_threshold=1.1)
    assert t["claims"].query("claim == 4")["verdict"].item() == "contradicted"


def _set_row_weights(results, aux_by_seed):
    """PMTRec's user row weights of every epoch: (least, most active) group's social weight per seed."""
    for r in results.values():
        least, most = aux_by_seed.get(int(r["seed"]), (None, None))
        for ep in r["curves"]:
            if "row_weight_by_user_group" in ep:
                ep["row_weight_by_user_group"] = {"0": {"rec": 1 - least, "social": least},
                                                  "1": {"rec": 1 - most, "social": most}}


def test_personalisation_claim_seed_rule(tmp_path):
    # the least active users lean less on the aux task on every seed: the interval lies below 0
    entries, results = per_user_study(tmp_path, seeds=(0, 1, 2), with_files=False)
    _set_row_weights(results, {0: (0.2, 0.4), 1: (0.25, 0.4), 2: (0.15, 0.4)})
    c3 = agg.aggregate(entries, results=results)["claims"].query("claim == 3").iloc[0]
    assert c3["verdict"] == "contradicted" and c3["diff"] == pytest.approx(-0.2)
    half = stats.t.ppf(0.975, 2) * np.std([-0.2, -0.15, -0.25], ddof=1) / np.sqrt(3)
    assert (c3["ci_low"], c3["ci_high"]) == pytest.approx((-0.2 - half, -0.2 + half))
    # the seeds disagree: the interval contains 0
    _set_row_weights(results, {0: (0.6, 0.4), 1: (0.2, 0.4), 2: (0.5, 0.4)})
    c3 = agg.aggregate(entries, results=results)["claims"].query("claim == 3").iloc[0]
    assert c3["verdict"] == "inconclusive" and "contains 0" in c3["note"] and c3["diff"] == pytest.approx(0.1 / 3)
    # they agree the other way: supported
    _set_row_weights(results, {0: (0.6, 0.4), 1: (0.55, 0.4), 2: (0.5, 0.4)})
    assert agg.aggregate(entries, results=results)["claims"].query("claim == 3")["verdict"].item() == "supported"
    # one seed: no interval, no verdict
    entries, results = per_user_study(tmp_path, seeds=(0,), with_files=False)
    _set_row_weights(results, {0: (0.2, 0.4)})
    c3 = agg.aggregate(entries, results=results)["claims"].query("claim == 3").iloc[0]
    assert c3["verdict"] == "inconclusive" and "one seed" in c3["note"] and c3["diff"] == pytest.approx(-0.2)
    # equal weights in every group: not personalised, whatever the seeds say
    entries, results = per_user_study(tmp_path, seeds=(0, 1), with_files=False)
    _set_row_weights(results, {0: (0.3, 0.3), 1: (0.3, 0.3)})
    c3 = agg.aggregate(entries, results=results)["claims"].query("claim == 3").iloc[0]
    assert c3["verdict"] == "contradicted" and "not personalised" in c3["note"]
    entries, results = per_user_study(tmp_path, seeds=(0,), with_files=False, rows=False)
    cl = agg.aggregate(entries, results=results)["claims"]
    assert cl.query("claim == 3")["verdict"].item() == "inconclusive"


def test_results_without_per_user_files_aggregate_untested(tmp_path):
    entries, results = per_user_study(tmp_path, with_files=False)
    t = agg.aggregate(entries, results=results)
    c = t["comparisons"]
    assert (c["n_seeds"] == 5).all() and c["ci_low"].notna().all()  # the seed interval is still given
    assert set(c["note"]) == {"no per-user metrics: no test"} and c["p_holm"].isna().all()
    assert set(c["verdict"]) == {"inconclusive"}


def test_too_few_seeds_gives_intervals_but_no_p(tmp_path):
    entries, results = per_user_study(tmp_path, seeds=(0, 1, 2))
    t = agg.aggregate(entries, results=results)
    c, cl = t["comparisons"], t["claims"]
    assert set(c["note"]) == {"fewer than 5 seeds: no test"} and c["p_user"].isna().all()
    assert c["ci_low"].notna().all()
    assert set(cl.query("claim in (1, 2)")["verdict"]) == {"inconclusive (too few seeds)"}
    # with min_seeds 3 the same runs are tested
    t = agg.aggregate(entries, results=results, min_seeds=3, n_resamples=199)
    assert t["comparisons"]["p_holm"].notna().all()


@pytest.mark.parametrize("key, value, message", [
    ("min_seeds", 1, "significance.min_seeds must be an integer of at least 2, got 1"),
    ("equivalence_margin", 0.0, "significance.equivalence_margin must lie in (0, 1), got 0.0"),
    ("n_resamples", 0, "significance.n_resamples must be a positive integer, got 0"),
])
def test_bad_significance_settings_are_refused(key, value, message):
    e = entry("main", "ew", 0)
    with pytest.raises(agg.AggregateError) as err:
        agg.aggregate([e], results={e["path"]: make_result()}, **{key: value})
    assert str(err.value) == message


def test_malformed_per_user_file_is_refused_naming_it(tmp_path):
    from pmtrec.training.per_user import per_user_path

    entries, results = per_user_study(tmp_path, seeds=(0,), with_files=False)
    bad = per_user_path(entries[0]["path"])
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_bytes(b"not a zip")
    with pytest.raises(agg.AggregateError) as err:
        agg.aggregate(entries, results=results)
    assert str(err.value).startswith(f"{bad}: not a per-user metrics file") and "\n" not in str(err.value)
