"""pmtrec.study.comparisons: every statistic against scipy/statsmodels or a hand computation, the
verdict rule and the claims aggregation on a hand-made study (a win, a tie, a loss, too few seeds)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pmtrec.errors import PmtrecError
from pmtrec.study import comparisons as cmp


# ------------------------------------------------------------------------------- seed interval
def test_seed_interval_matches_a_hand_t_interval_and_pairs_by_seed():
    ref = pd.Series([0.30, 0.32, 0.31, 0.33, 0.29], index=[0, 1, 2, 3, 4])
    other = pd.Series([0.99, 0.30, 0.28, 0.30, 0.29, 0.28], index=[9, 4, 0, 3, 2, 1])  # shuffled, seed 9 unpaired
    out = cmp.seed_interval(ref, other)
    d = np.array([0.30 - 0.28, 0.32 - 0.28, 0.31 - 0.29, 0.33 - 0.30, 0.29 - 0.30])
    half = stats.t.ppf(0.975, 4) * d.std(ddof=1) / math.sqrt(5)
    assert out["n"] == 5
    assert out["diff"] == pytest.approx(d.mean())
    assert (out["ci_low"], out["ci_high"]) == pytest.approx((d.mean() - half, d.mean() + half))
    ci = stats.ttest_1samp(d, 0).confidence_interval(0.95)  # scipy's own interval agrees
    assert (out["ci_low"], out["ci_high"]) == pytest.approx((ci.low, ci.high))
    assert out["mean_other"] == pytest.approx(np.mean([0.28, 0.28, 0.29, 0.30, 0.30]))
    assert out["rel_pct"] == pytest.approx(100 * d.mean() / out["mean_other"])
    narrow = cmp.seed_interval(ref, other, level=0.5)
    assert narrow["ci_high"] - narrow["ci_low"] < out["ci_high"] - out["ci_low"]


def test_seed_interval_one_seed_has_no_interval():
    out = cmp.seed_interval(pd.Series([0.4], index=[0]), pd.Series([0.2], index=[0]))
    assert out["n"] == 1 and out["diff"] == pytest.approx(0.2) and out["rel_pct"] == pytest.approx(100.0)
    assert math.isnan(out["ci_low"]) and math.isnan(out["ci_high"])
    with pytest.raises(PmtrecError, match="level"):
        cmp.seed_interval(pd.Series([0.4]), pd.Series([0.2]), level=95)


# ------------------------------------------------------------------------------- randomisation test
def exact_sign_flip(d: np.ndarray) -> float:
    """Every one of the 2**n sign patterns, counted by hand."""
    signs = np.array(list(itertools.product([1, -1], repeat=len(d))))
    null = np.abs(signs @ d)
    return float((null >= abs(d.sum()) - 1e-12).mean())


def test_sign_flip_exact_on_tiny_cases():
    # [1, 2, 3]: only all-plus and all-minus reach |sum| = 6 -> 2 of 8
    assert cmp.sign_flip_pvalue(np.array([1.0, 2.0, 3.0]), n_resamples=100) == pytest.approx(0.25)
    # [.3, .1, .2, -.05]: also the two patterns flipping -0.05 (|sum| .65 >= .55) -> 4 of 16
    d = np.array([0.3, 0.1, 0.2, -0.05])
    assert cmp.sign_flip_pvalue(d, n_resamples=100) == pytest.approx(0.25) == pytest.approx(exact_sign_flip(d))
    assert cmp.sign_flip_pvalue(np.zeros(5), n_resamples=100) == 1.0


def test_sign_flip_monte_carlo_is_close_to_exact_and_deterministic():
    d = np.random.default_rng(3).normal(0.15, 1.0, 12)  # 4096 patterns > 2000 resamples: Monte Carlo
    exact = exact_sign_flip(d)
    p = cmp.sign_flip_pvalue(d, n_resamples=2000, seed=1)
    assert 0.01 < exact < 0.99
    assert abs(p - exact) < 4 * math.sqrt(exact * (1 - exact) / 2000) + 1 / 2001
    assert cmp.sign_flip_pvalue(d, n_resamples=2000, seed=1) == p
    scipy_p = stats.permutation_test((d,), lambda x, axis: np.mean(x, axis=axis), permutation_type="samples",
                                     vectorized=True, n_resamples=2000, rng=np.random.default_rng(0)).pvalue
    assert abs(p - scipy_p) < 8 * math.sqrt(exact * (1 - exact) / 2000)
    # a sure difference: no resample reaches it, p = 1 / (1 + n_resamples)
    assert cmp.sign_flip_pvalue(np.full(30, 0.1), n_resamples=99, seed=0) == pytest.approx(0.01)
    with pytest.raises(PmtrecError, match="n_resamples"):
        cmp.sign_flip_pvalue(d, n_resamples=0)


def test_user_paired_test_reports_scipy_ttest_rel():
    rng = np.random.default_rng(0)
    other = rng.uniform(0.1, 0.5, 200)
    ref = other + rng.normal(0.01, 0.05, 200)
    out = cmp.user_paired_test(ref, other, n_resamples=999, seed=0)
    t = stats.ttest_rel(ref, other)
    assert out["n_users"] == 200 and out["diff"] == pytest.approx(np.mean(ref - other))
    assert out["t_stat"] == pytest.approx(t.statistic) and out["p_t"] == pytest.approx(t.pvalue)
    assert abs(out["p_user"] - t.pvalue) < 0.05  # 200 users: randomisation and t agree closely
    same = cmp.user_paired_test(other, other, n_resamples=99)
    assert same["p_user"] == 1.0 and same["p_t"] == 1.0
    with pytest.raises(PmtrecError, match="aligned"):
        cmp.user_paired_test(ref, other[:-1])
    with pytest.raises(PmtrecError, match="non-finite"):
        cmp.user_paired_test(np.r_[ref[:-1], np.nan], other)


# ------------------------------------------------------------------------------- equivalence
def scipy_tost(d: np.ndarray, bound: float) -> float:
    lower = stats.ttest_1samp(d, -bound, alternative="greater").pvalue
    upper = stats.ttest_1samp(d, bound, alternative="less").pvalue
    return float(max(lower, upper))


def test_tost_inside_and_outside_the_margin_matches_two_scipy_t_tests():
    rng = np.random.default_rng(1)
    other = rng.uniform(0.2, 0.6, 100)
    inside = other * (1 + rng.normal(0.0, 0.002, 100))
    outside = other * 1.05 + rng.normal(0.0, 0.002, 100)
    bound = 0.01 * other.mean()
    e_in, e_out = cmp.equivalence(inside, other, 0.01), cmp.equivalence(outside, other, 0.01)
    assert (e_in["low"], e_in["upp"]) == pytest.approx((-bound, bound))
    assert e_in["p_tost"] < 1e-6 and e_in["p_tost"] == pytest.approx(scipy_tost(inside - other, bound))
    assert e_out["p_tost"] > 0.99 and e_out["p_tost"] == pytest.approx(scipy_tost(outside - other, bound))
    assert cmp.equivalence(other, other)["p_tost"] == 0.0  # identical: surely within any margin
    with pytest.raises(PmtrecError, match="equivalence_margin"):
        cmp.equivalence(inside, other, 0)


# ------------------------------------------------------------------------------- Holm
def test_holm_hand_worked_keeps_nan_out():
    # sorted .005 .01 .03 .04 -> x4 x3 x2 x1 = .02 .03 .06 .04 -> running max .02 .03 .06 .06
    out = cmp.holm([0.01, np.nan, 0.04, 0.03, 0.005])
    assert math.isnan(out[1])
    np.testing.assert_allclose(out[[0, 2, 3, 4]], [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(cmp.holm([0.5, 0.6]), [1.0, 1.0])  # capped at 1
    assert np.isnan(cmp.holm([np.nan, np.nan])).all()
    with pytest.raises(PmtrecError, match="p-values"):
        cmp.holm([0.5, 1.5])


# ------------------------------------------------------------------------------- verdict
@pytest.mark.parametrize("row, expected", [
    ({"n_seeds": 5, "diff": 0.02, "p_holm": 0.001, "p_tost": 0.9}, "supported"),
    ({"n_seeds": 5, "diff": -0.02, "p_holm": 0.001, "p_tost": 0.9}, "contradicted"),
    ({"n_seeds": 5, "diff": 0.0001, "p_holm": 0.7, "p_tost": 0.001}, "equivalent"),
    ({"n_seeds": 5, "diff": 0.003, "p_holm": 0.2, "p_tost": 0.3}, "inconclusive"),
    ({"n_seeds": 5, "diff": 0.003, "p_holm": 0.06, "p_tost": 0.3}, "inconclusive"),  # not below alpha
    ({"n_seeds": 3, "diff": 0.05, "p_holm": float("nan"), "p_tost": float("nan")}, cmp.TOO_FEW),
    ({"n_seeds": 5, "diff": 0.05, "p_holm": float("nan"), "p_tost": float("nan")}, "inconclusive"),
])
def test_verdict_rule(row, expected):
    assert cmp.verdict(row) == expected


def test_verdict_alpha_and_min_seeds():
    row = {"n_seeds": 4, "diff": 0.02, "p_holm": 0.03, "p_tost": 0.9}
    assert cmp.verdict(row, min_seeds=4) == "supported"
    assert cmp.verdict(row, alpha=0.01, min_seeds=4) == "inconclusive"
    assert cmp.verdict(row) == cmp.TOO_FEW


# ------------------------------------------------------------------------------- the table
N_USERS = 40


def study() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Dataset "a" (5 seeds): a clear win, a tie within 0.1%, a clear loss; "b": 3 seeds only."""
    rng = np.random.default_rng(7)
    runs, users = [], []
    base = rng.uniform(0.2, 0.6, N_USERS)
    half = rng.normal(0.0, 0.0005, N_USERS // 2)
    tie = np.r_[half, -half]  # tiny, and summing to zero: the tie's mean difference is exactly 0
    for dataset, seeds in (("a", range(5)), ("b", range(3))):
        for s in seeds:
            ref = np.clip(base + rng.normal(0, 0.01, N_USERS), 0, 1)
            per = {"pmtrec": ref, "win": ref - 0.05 + rng.normal(0, 0.01, N_USERS), "tie": ref - tie * ref,
                   "loss": ref + 0.05 + rng.normal(0, 0.01, N_USERS)}
            for method, v in per.items():
                users.append(pd.DataFrame({"dataset": dataset, "method": method, "seed": s,
                                           "user": np.arange(N_USERS), "ndcg@20": v, "recall@20": v / 2}))
                for metric, value in (("ndcg@20", v.mean()), ("recall@20", v.mean() / 2)):
                    runs.append({"dataset": dataset, "method": method, "seed": s, "metric": metric, "value": value})
    return pd.DataFrame(runs), pd.concat(users, ignore_index=True)


@pytest.fixture(scope="module")
def table():
    runs, per_user = study()
    return cmp.comparison_table(runs, per_user, n_resamples=999, seed=0)


def test_comparison_table_verdicts_on_a_hand_made_study(table):
    assert list(table.columns) == cmp.COLUMNS and len(table) == 2 * 3 * 2
    v = table.set_index(["dataset", "method", "metric"])["verdict"]
    for metric in ("ndcg@20", "recall@20"):
        assert v[("a", "win", metric)] == "supported"
        assert v[("a", "tie", metric)] == "equivalent"
        assert v[("a", "loss", metric)] == "contradicted"
        for m in ("win", "tie", "loss"):
            assert v[("b", m, metric)] == cmp.TOO_FEW


def test_comparison_table_values(table):
    runs, per_user = study()
    a = table[(table["dataset"] == "a") & (table["method"] == "win") & (table["metric"] == "ndcg@20")].iloc[0]
    by = runs[(runs["dataset"] == "a") & (runs["metric"] == "ndcg@20")].pivot(index="seed", columns="method",
                                                                            values="value")
    assert a["n_seeds"] == 5 and a["n_users"] == N_USERS
    assert a["diff"] == pytest.approx((by["pmtrec"] - by["win"]).mean())
    assert a["rel_pct"] == pytest.approx(100 * a["diff"] / by["win"].mean())
    u = per_user[(per_user["dataset"] == "a")].groupby(["method", "user"])["ndcg@20"].mean().unstack("method")
    assert a["p_t"] == pytest.approx(stats.ttest_rel(u["pmtrec"], u["win"]).pvalue)
    tested = table["p_user"].notna()
    assert tested.sum() == 6  # dataset a only
    np.testing.assert_allclose(table.loc[tested, "p_holm"], cmp.holm(table.loc[tested, "p_user"]))
    assert (table.loc[tested, "p_holm"] >= table.loc[tested, "p_user"]).all()
    b = table[table["dataset"] == "b"]
    assert b[["p_user", "p_t", "p_holm", "p_tost"]].isna().all().all()
    assert (b["note"] == "fewer than 5 seeds: no test").all()
    assert b["ci_low"].notna().all() and (b["ci_low"] < b["diff"]).all()  # 3 seeds still give an interval


def test_comparison_table_others_and_missing_per_user():
    runs, per_user = study()
    only = cmp.comparison_table(runs, None, others=["win"], metrics=("ndcg@20",))
    assert set(only["method"]) == {"win"} and len(only) == 2
    a = only[only["dataset"] == "a"].iloc[0]
    assert a["note"] == "no per-user metrics: no test" and a["verdict"] == "inconclusive"
    assert math.isnan(a["p_holm"]) and not math.isnan(a["ci_low"])
    assert cmp.comparison_table(runs, per_user, reference="nobody").empty


def test_comparison_table_refuses_bad_frames():
    runs, per_user = study()
    with pytest.raises(PmtrecError, match="runs: more than one row"):
        cmp.comparison_table(pd.concat([runs, runs.iloc[:1]]), per_user)
    with pytest.raises(PmtrecError, match="runs: missing column.*value"):
        cmp.comparison_table(runs.drop(columns="value"), per_user)
    with pytest.raises(PmtrecError, match="per_user: missing column.*user"):
        cmp.comparison_table(runs, per_user.drop(columns="user"))
    with pytest.raises(PmtrecError, match="min_seeds"):
        cmp.comparison_table(runs, per_user, min_seeds=1)


def test_user_means_average_over_seeds_and_drop_incomplete_users():
    df = pd.DataFrame({"method": ["r", "r", "o", "o", "r", "o"], "seed": [0, 1, 0, 1, 0, 0],
                       "user": [1, 1, 1, 1, 2, 2], "m": [0.2, 0.4, 0.1, 0.3, 0.5, 0.5]})
    out = cmp.user_means(df, ["r", "o"], [0, 1], "m")
    assert list(out.index) == [1]  # user 2 lacks seed 1
    assert out.loc[1, "r"] == pytest.approx(0.3) and out.loc[1, "o"] == pytest.approx(0.2)


# ------------------------------------------------------------------------------- the claims
def claim(claims: pd.DataFrame, n: int, dataset: str, metric: str | None = "ndcg@20") -> pd.Series:
    sel = (claims["claim"] == n) & (claims["dataset"] == dataset)
    if metric is not None:
        sel &= claims["metric"] == metric
    assert sel.sum() == 1
    return claims[sel].iloc[0]


def test_claim_one_needs_a_win_against_every_baseline(table):
    def c1(baselines):
        return claim(cmp.claims_table(table, baselines), 1, "a")

    assert c1(["win"])["verdict"] == "supported"
    loss = c1(["win", "tie", "loss"])
    assert loss["verdict"] == "contradicted" and loss["against"] == "loss" and loss["n_contradicted"] == 1
    assert loss["n_compared"] == 3 and loss["diff"] < 0 and loss["p_holm"] < 0.05
    tie = c1(["win", "tie"])  # the tie is the strongest baseline
    assert tie["verdict"] == "equivalent" and tie["against"] == "tie"
    both = cmp.claims_table(table, ["win", "tie"])
    assert claim(both, 1, "b")["verdict"] == cmp.TOO_FEW
    assert claim(both, 1, "b")["note"] == "fewer than 5 seeds: no test"


def test_claim_two_equivalent_variant_means_a_module_adds_nothing(table):
    claims = cmp.claims_table(table, [], variants=["win", "tie"])
    assert set(claims["claim"]) == {2}
    row = claim(claims, 2, "a")
    assert row["verdict"] == "equivalent" and row["against"] == "tie"
    assert claim(cmp.claims_table(table, [], variants=["win"]), 2, "a")["verdict"] == "supported"


def test_claims_three_and_four_hooks(table):
    claims = cmp.claims_table(table, ["win"], personalisation={"a": True, "b": None},
                              overhead={"a": 1.2, "b": 2.0, "c": float("nan")}, overhead_threshold=1.5)
    assert claim(claims, 3, "a", None)["verdict"] == "supported"
    assert claim(claims, 3, "b", None)["verdict"] == "inconclusive"
    four = {ds: claim(claims, 4, ds, None) for ds in "abc"}
    assert [four[ds]["verdict"] for ds in "abc"] == ["supported", "contradicted", "inconclusive"]
    assert four["a"]["diff"] == pytest.approx(1.2)
    with pytest.raises(PmtrecError, match="unknown verdict"):
        cmp.claims_table(table.assign(verdict="maybe"), ["win"])
    with pytest.raises(PmtrecError, match="threshold"):
        cmp.overhead_claim({"a": 1.0}, threshold=0)
