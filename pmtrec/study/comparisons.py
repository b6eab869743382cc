"""The reference method against every other method: effects, intervals, tests and verdicts.

Pure functions on pandas frames and numpy arrays (no file I/O, no plotting). The rules are
written out in ``docs/statistics.md``; in short, per dataset, other method and metric:

* the **effect** is the mean over seeds of the paired difference reference - other, with a
  t-based 95% interval over seeds (the unit is the seed: it carries training randomness);
* the **test** is a paired sign-flip randomisation test over users (each user's metric averaged
  over the seeds first; the unit is the user: it carries test-set sampling), with the paired
  t-test beside it; p-values are Holm-corrected over every comparison of the table;
* **equivalence** is a TOST on the same per-user differences, bounds +-margin x the other's mean;
* with fewer than ``min_seeds`` seeds no p-value is given at all (the note says why).

Inputs (long/tidy, as ``pmtrec.aggregate`` writes them):

``runs``       dataset, method, seed, metric, value: one test-split value per run (filter
               ``runs.csv`` to the test split and the kinds compared before calling)
``per_user``   dataset, method, seed, user, then one column per metric (``ndcg@20``, ...): the
               per-user test metrics of each run (``pmtrec.training.per_user``)
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from pmtrec.errors import PmtrecError

METRICS = ("ndcg@20", "recall@20")
RUN_KEYS = ("dataset", "method", "seed", "metric")
USER_KEYS = ("dataset", "method", "seed", "user")
COLUMNS = ["dataset", "reference", "method", "metric", "n_seeds", "mean_ref", "mean_other", "diff", "ci_low",
           "ci_high", "rel_pct", "n_users", "p_user", "p_t", "p_holm", "p_tost", "verdict", "note"]
VERDICTS = ("supported", "contradicted", "equivalent", "inconclusive", "inconclusive (too few seeds)")
TOO_FEW = "inconclusive (too few seeds)"

#: The claims judged by :func:`claims_table` (id -> what is claimed).
CLAIMS = {
    1: "PMTRec beats the existing multi-task methods on every dataset",
    2: "each PMTRec module contributes (the full model beats every ablation variant)",
    3: "PMTRec personalises the task weighting",
    4: "PMTRec's overhead is small (epoch time at most the threshold times EW's)",
}
CLAIM_COLUMNS = ["claim", "claim_text", "dataset", "metric", "verdict", "against", "diff", "ci_low", "ci_high",
                 "rel_pct", "p_holm", "p_tost", "n_seeds", "n_compared", "n_supported", "n_contradicted",
                 "n_equivalent", "note"]


# ------------------------------------------------------------------------------- statistics
def seed_interval(ref: pd.Series, other: pd.Series, level: float = 0.95) -> dict[str, float]:
    """Mean paired difference ref - other over the seeds both have (index = seed), its t interval.

    Returns n, mean_ref, mean_other, diff, ci_low, ci_high (NaN below 2 seeds) and rel_pct
    (100 x diff / mean_other; NaN when mean_other is 0).
    """
    from scipy import stats

    if not 0 < level < 1:
        raise PmtrecError(f"level must lie in (0, 1), got {level}")
    both = pd.concat([ref.rename("ref"), other.rename("other")], axis=1, join="inner").dropna()
    n = len(both)
    nan = float("nan")
    out = {"n": n, "mean_ref": nan, "mean_other": nan, "diff": nan, "ci_low": nan, "ci_high": nan, "rel_pct": nan}
    if n == 0:
        return out
    d = (both["ref"] - both["other"]).to_numpy(dtype=float)
    m_ref, m_other, diff = float(both["ref"].mean()), float(both["other"].mean()), float(d.mean())
    out.update(mean_ref=m_ref, mean_other=m_other, diff=diff, rel_pct=100 * diff / m_other if m_other else nan)
    if n >= 2:
        half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * float(d.std(ddof=1)) / math.sqrt(n)
        out.update(ci_low=diff - half, ci_high=diff + half)
    return out


def _paired_diffs(ref_users: np.ndarray, other_users: np.ndarray) -> np.ndarray:
    ref_users, other_users = np.asarray(ref_users, dtype=float), np.asarray(other_users, dtype=float)
    if ref_users.shape != other_users.shape or ref_users.ndim != 1:
        raise PmtrecError(f"per-user arrays must be 1-D and aligned by user, got shapes "
                          f"{ref_users.shape} and {other_users.shape}")
    d = ref_users - other_users
    if not np.isfinite(d).all():
        raise PmtrecError(f"per-user metrics hold {int((~np.isfinite(d)).sum())} non-finite value(s)")
    return d


def _constant(d: np.ndarray) -> bool:
    return bool(np.ptp(d) == 0)


def sign_flip_pvalue(d: np.ndarray, n_resamples: int = 9999, seed: int = 0) -> float:
    """Two-sided sign-flip randomisation p-value of mean(d) = 0 (paired differences ``d``).

    Exact (``scipy.stats.permutation_test`` enumerates all 2**n sign patterns) when
    2**n <= n_resamples; otherwise Monte Carlo, p = (1 + #{|null| >= |observed|}) / (1 + n_resamples)
    as scipy computes it, but hand-written: scipy takes ~200 s for 50k users x 10k resamples,
    random sign bits and one matrix product per batch take ~5 s.
    """
    from scipy import stats

    d = np.asarray(d, dtype=float)
    n, n_resamples = len(d), int(n_resamples)
    if n_resamples < 1:
        raise PmtrecError(f"significance.n_resamples must be a positive integer, got {n_resamples}")
    if n < 63 and 2**n <= n_resamples:
        res = stats.permutation_test((d,), lambda x, axis: np.mean(x, axis=axis), permutation_type="samples",
                                     vectorized=True, n_resamples=n_resamples, alternative="two-sided")
        return float(res.pvalue)
    total = float(d.sum())
    tol = 1e-9 * float(np.abs(d).sum())  # rounding of the sums must not break ties with the observed
    rng = np.random.default_rng(seed)
    batch, count, done = max(1, 2**22 // n), 0, 0
    while done < n_resamples:  # batches of resamples bound the memory
        m = min(batch, n_resamples - done)
        flip = np.unpackbits(rng.integers(0, 256, (m, (n + 7) // 8), dtype=np.uint8), axis=1, count=n)
        null = total - 2.0 * (flip @ d)  # sum of d with the flipped entries negated
        count += int((np.abs(null) >= abs(total) - tol).sum())
        done += m
    return (count + 1) / (n_resamples + 1)


def user_paired_test(ref_users: np.ndarray, other_users: np.ndarray, n_resamples: int = 9999,
                     seed: int = 0) -> dict[str, float]:
    """Paired tests over users: the sign-flip randomisation test (:func:`sign_flip_pvalue`) and
    the paired t-test (``scipy.stats.ttest_rel``).

    Returns n_users, diff (mean per-user difference), p_user, t_stat, p_t.
    """
    from scipy import stats

    d = _paired_diffs(ref_users, other_users)
    n = len(d)
    nan = float("nan")
    out = {"n_users": n, "diff": float(d.mean()) if n else nan, "p_user": nan, "t_stat": nan, "p_t": nan}
    if n < 2:
        return out
    out["p_user"] = sign_flip_pvalue(d, n_resamples, seed)
    if _constant(d):  # zero variance: the t-test's limit (no difference at all, or a sure one)
        out.update(t_stat=0.0 if d[0] == 0 else math.copysign(math.inf, d[0]), p_t=1.0 if d[0] == 0 else 0.0)
    else:
        t = stats.ttest_rel(ref_users, other_users)
        out.update(t_stat=float(t.statistic), p_t=float(t.pvalue))
    return out


def equivalence(ref_users: np.ndarray, other_users: np.ndarray, margin_rel: float = 0.01) -> dict[str, float]:
    """TOST on the paired per-user differences, bounds +-margin_rel x the other's mean
    (``statsmodels.stats.weightstats.ttost_paired``; p = the larger of the two one-sided p's).

    Returns low, upp, p_tost (small: the difference lies within the bounds).
    """
    from statsmodels.stats.weightstats import ttost_paired

    if not margin_rel > 0:
        raise PmtrecError(f"significance.equivalence_margin must be positive, got {margin_rel}")
    d = _paired_diffs(ref_users, other_users)
    bound = abs(float(margin_rel) * float(np.mean(other_users))) if len(d) else float("nan")
    out = {"low": -bound, "upp": bound, "p_tost": float("nan")}
    if len(d) < 2 or bound == 0:
        return out
    if _constant(d):  # zero variance: both one-sided tests are certain
        out["p_tost"] = 0.0 if -bound < d[0] < bound else 1.0
    else:
        out["p_tost"] = float(ttost_paired(np.asarray(ref_users, float), np.asarray(other_users, float),
                                           -bound, bound)[0])
    return out


def holm(pvalues: Sequence[float] | np.ndarray | pd.Series) -> np.ndarray:
    """Holm-corrected p-values over the whole family; NaNs are kept out of it and stay NaN."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        if ((p[ok] < 0) | (p[ok] > 1)).any():
            raise PmtrecError(f"p-values must lie in [0, 1], got {p[ok][(p[ok] < 0) | (p[ok] > 1)][0]}")
        out[ok] = multipletests(p[ok], method="holm")[1]
    return out


def verdict(row: Mapping[str, Any], alpha: float = 0.05, min_seeds: int = 5) -> str:
    """supported / contradicted (significant after Holm, by the sign of diff), equivalent (TOST),
    inconclusive; "inconclusive (too few seeds)" below ``min_seeds`` seeds (never tested)."""
    if _f(row.get("n_seeds")) < min_seeds:
        return TOO_FEW
    p_holm, p_tost, diff = (_f(row.get(k)) for k in ("p_holm", "p_tost", "diff"))
    if math.isnan(p_holm):
        return "inconclusive"
    if p_holm < alpha and diff > 0:
        return "supported"
    if p_holm < alpha and diff < 0:
        return "contradicted"
    if not math.isnan(p_tost) and p_tost < alpha:
        return "equivalent"
    return "inconclusive"


def _f(value: Any) -> float:
    return float("nan") if value is None or (isinstance(value, str) and not value) else float(value)


# ------------------------------------------------------------------------------- the table
def _check(df: pd.DataFrame, name: str, keys: Sequence[str], extra: Sequence[str] = ()) -> None:
    missing = [c for c in (*keys, *extra) if c not in df.columns]
    if missing:
        raise PmtrecError(f"{name}: missing column(s) {', '.join(missing)}")
    dup = df.duplicated(list(keys))
    if dup.any():
        first = df.loc[dup, list(keys)].iloc[0].to_dict()
        raise PmtrecError(f"{name}: more than one row for {first} (filter to one split/kind first)")


def user_means(per_user: pd.DataFrame, methods: Sequence[str], seeds: Iterable, metric: str) -> pd.DataFrame:
    """Per user: ``metric`` averaged over ``seeds``, one column per method; users without every
    seed of every method are left out (so the two columns are aligned by user)."""
    seeds = list(seeds)
    sub = per_user[per_user["method"].isin(methods) & per_user["seed"].isin(seeds)]
    g = sub.groupby(["user", "method"])[metric].agg(["mean", "count"]).unstack("method")
    g = g[(g["count"].reindex(columns=list(methods)) == len(seeds)).all(axis=1)]
    return g["mean"].reindex(columns=list(methods))


def comparison_table(runs: pd.DataFrame, per_user: pd.DataFrame | None, reference: str = "pmtrec",
                     metrics: Sequence[str] = METRICS, others: Iterable[str] | None = None, min_seeds: int = 5,
                     margin: float = 0.01, n_resamples: int = 9999, seed: int = 0, level: float = 0.95,
                     alpha: float = 0.05) -> pd.DataFrame:
    """One row per (dataset, other method, metric): the columns of :data:`COLUMNS`.

    ``others``: the methods compared with ``reference`` (default: every other method of the
    dataset). Holm runs over every tested row of the returned table.
    """
    if int(min_seeds) < 2:
        raise PmtrecError(f"significance.min_seeds must be at least 2, got {min_seeds}")
    _check(runs, "runs", RUN_KEYS, ["value"])
    if per_user is not None:
        _check(per_user, "per_user", USER_KEYS)
    runs = runs[runs["metric"].isin(metrics)].dropna(subset=["value"])
    wanted = None if others is None else set(others) - {reference}
    rows = []
    for dataset, d in runs.groupby("dataset", sort=False):
        if reference not in set(d["method"]):
            continue
        users_d = None if per_user is None else per_user[per_user["dataset"] == dataset]
        names = [m for m in dict.fromkeys(d["method"]) if m != reference and (wanted is None or m in wanted)]
        by = d.set_index(["method", "metric", "seed"])["value"].sort_index()
        present = set(by.index.droplevel("seed"))
        for method in names:
            for metric in metrics:
                if (reference, metric) not in present or (method, metric) not in present:
                    continue
                ref_s, other_s = by.loc[(reference, metric)], by.loc[(method, metric)]
                rows.append(_row(dataset, reference, method, metric, ref_s, other_s, users_d, min_seeds, margin,
                                 n_resamples, seed, level))
    out = pd.DataFrame(rows, columns=COLUMNS)
    if out.empty:
        return out
    out["p_holm"] = holm(out["p_user"].to_numpy(dtype=float))
    out["verdict"] = [verdict(r, alpha, min_seeds) for r in out.to_dict("records")]
    return out


def _row(dataset, reference, method, metric, ref_s, other_s, users_d, min_seeds, margin, n_resamples, seed,
         level) -> dict:
    iv = seed_interval(ref_s, other_s, level)
    nan = float("nan")
    row = {"dataset": dataset, "reference": reference, "method": method, "metric": metric, "n_seeds": iv["n"],
           **{k: iv[k] for k in ("mean_ref", "mean_other", "diff", "ci_low", "ci_high", "rel_pct")},
           "n_users": 0, "p_user": nan, "p_t": nan, "p_holm": nan, "p_tost": nan, "verdict": "", "note": ""}
    if iv["n"] < min_seeds:
        row["note"] = f"fewer than {min_seeds} seeds: no test"
        return row
    if users_d is None or metric not in users_d.columns:
        row["note"] = "no per-user metrics: no test"
        return row
    seeds = ref_s.dropna().index.intersection(other_s.dropna().index)
    means = user_means(users_d, [reference, method], seeds, metric)
    if len(means) < 2:
        row["note"] = "fewer than 2 users with per-user metrics on every seed: no test"
        return row
    ref_u, other_u = means[reference].to_numpy(), means[method].to_numpy()
    test = user_paired_test(ref_u, other_u, n_resamples, seed)
    row.update(n_users=test["n_users"], p_user=test["p_user"], p_t=test["p_t"],
               p_tost=equivalence(ref_u, other_u, margin)["p_tost"])
    return row


# ------------------------------------------------------------------------------- the claims
def _aggregate(rows: pd.DataFrame, equivalent_if: str) -> tuple[str, pd.Series, str]:
    """One verdict from several comparisons of one dataset and metric, and the row reported.

    All supported -> supported; any contradicted -> contradicted; equivalent when the strongest
    other method (highest mean_other) is (``equivalent_if="strongest"``) or any is ("any");
    untested rows -> too few seeds; else inconclusive.
    """
    v = rows["verdict"]
    strongest = rows.loc[rows["mean_other"].astype(float).idxmax()] if rows["mean_other"].notna().any() \
        else rows.iloc[0]
    if (v == "contradicted").any():
        hit = rows[v == "contradicted"]
        return "contradicted", hit.loc[hit["diff"].astype(float).idxmin()], ""
    if (v == "supported").all():
        return "supported", strongest, ""
    if equivalent_if == "strongest" and strongest["verdict"] == "equivalent":
        return "equivalent", strongest, ""
    if equivalent_if == "any" and (v == "equivalent").any():
        return "equivalent", rows[v == "equivalent"].iloc[0], ""
    if (v == TOO_FEW).any():
        return TOO_FEW, strongest, str(rows.loc[v == TOO_FEW, "note"].iloc[0])
    return "inconclusive", strongest, ""


def _claim_rows(claim: int, comparisons: pd.DataFrame, methods: Iterable[str], equivalent_if: str) -> list[dict]:
    methods = set(methods)
    sub = comparisons[comparisons["method"].isin(methods)]
    out = []
    for (dataset, metric), rows in sub.groupby(["dataset", "metric"], sort=False):
        v, row, note = _aggregate(rows, equivalent_if)
        counts = rows["verdict"].value_counts()
        out.append({"claim": claim, "claim_text": CLAIMS[claim], "dataset": dataset, "metric": metric,
                    "verdict": v, "against": row["method"],
                    **{k: row[k] for k in ("diff", "ci_low", "ci_high", "rel_pct", "p_holm", "p_tost", "n_seeds")},
                    "n_compared": len(rows), "n_supported": int(counts.get("supported", 0)),
                    "n_contradicted": int(counts.get("contradicted", 0)),
                    "n_equivalent": int(counts.get("equivalent", 0)), "note": note or str(row["note"] or "")})
    return out


def personalisation_claim(flags: Mapping[str, bool | None]) -> list[dict]:
    """Claim 3 hook: per dataset, the personalisation table's flag (True: the weights differ
    between users as the claim says, False: they do not, None: not measured)."""
    verdicts = {True: "supported", False: "contradicted"}
    return [{"claim": 3, "claim_text": CLAIMS[3], "dataset": ds, "verdict": verdicts.get(flag, "inconclusive"),
             "note": "" if flag in verdicts else "not measured"} for ds, flag in flags.items()]


def overhead_claim(ratios: Mapping[str, float], threshold: float = 1.5) -> list[dict]:
    """Claim 4 hook: per dataset, PMTRec's epoch time / EW's against ``threshold``."""
    if not threshold > 0:
        raise PmtrecError(f"overhead threshold must be positive, got {threshold}")
    out = []
    for ds, ratio in ratios.items():
        r = _f(ratio)
        v = "inconclusive" if math.isnan(r) else ("supported" if r <= threshold else "contradicted")
        out.append({"claim": 4, "claim_text": CLAIMS[4], "dataset": ds, "verdict": v, "diff": r,
                    "against": "ew", "note": f"epoch-time ratio vs EW, threshold {threshold:g}"})
    return out


def claims_table(comparisons: pd.DataFrame, baselines: Iterable[str], variants: Iterable[str] = (),
                 personalisation: Mapping[str, bool | None] | None = None,
                 overhead: Mapping[str, float] | None = None, overhead_threshold: float = 1.5) -> pd.DataFrame:
    """Per claim, dataset (and metric for claims 1-2): the verdict and the comparison reported.

    Claim 1 uses the comparisons against ``baselines`` (the multi-task methods), claim 2 those
    against the ablation ``variants`` (any equivalent variant: that module adds nothing
    measurable); claims 3 and 4 take their own inputs (see the hooks).
    """
    missing = [c for c in COLUMNS if c not in comparisons.columns]
    if missing:
        raise PmtrecError(f"comparisons: missing column(s) {', '.join(missing)}")
    bad = set(comparisons["verdict"]) - set(VERDICTS)
    if bad:
        raise PmtrecError(f"comparisons: unknown verdict {sorted(bad)[0]!r}")
    rows = _claim_rows(1, comparisons, baselines, "strongest") + _claim_rows(2, comparisons, variants, "any")
    if personalisation is not None:
        rows += personalisation_claim(personalisation)
    if overhead is not None:
        rows += overhead_claim(overhead, overhead_threshold)
    return pd.DataFrame(rows, columns=CLAIM_COLUMNS)
