"""Main comparison (every method x Recall/NDCG@K) and ablation (PMTRec vs its variants)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from pmtrec.report import style
from pmtrec.report.data import ReportError, main_summary, metrics_of
from pmtrec.report.tables import (ZERO_STD, Cell, Table, deterministic_note, fmt_num, fmt_pct, metric_cells, rank_flags,
                                  sig_marker)

REF = style.REFERENCE


# ------------------------------------------------------------------------------ significance
def sig_row(significance: pd.DataFrame, dataset: str, metric: str) -> dict | None:
    s = significance[(significance["dataset"] == dataset) & (significance["metric"] == metric)]
    return None if s.empty else s.iloc[0].to_dict()


def cmp_row(comparisons: pd.DataFrame | None, dataset: str, method: str | None, metric: str) -> dict | None:
    """The comparisons-table row of PMTRec against ``method`` (None when absent or not given)."""
    if comparisons is None or method is None or comparisons.empty:
        return None
    c = comparisons[(comparisons["dataset"] == dataset) & (comparisons["method"] == method)
                    & (comparisons["metric"] == metric)]
    return None if c.empty else c.iloc[0].to_dict()


def holm_marker(row: dict | None) -> str:
    """'*' / '**' only from the Holm-corrected p of the comparisons table (untested: none)."""
    return "" if row is None else sig_marker(row.get("p_holm"))


def fmt_improvement(row: dict | None) -> str:
    """'+3.2% [+1.0, +5.4]': the relative effect and its 95% interval over seeds, in % of the baseline."""
    if row is None or pd.isna(row.get("rel_pct")):
        return "–"
    text = f"{float(row['rel_pct']):+.1f}%"
    base = row.get("mean_other")
    if not pd.isna(row.get("ci_low")) and not pd.isna(base) and base:
        text += f" [{100 * row['ci_low'] / base:+.1f}, {100 * row['ci_high'] / base:+.1f}]"
    return text


def best_baseline(significance: pd.DataFrame, dataset: str) -> str | None:
    s = significance[significance["dataset"] == dataset]
    return None if s.empty else str(s["baseline"].iloc[0])


def fmt_p(p: float) -> str:
    """'p = 0.012', 'p < 0.001' or 'p n/a'."""
    if math.isnan(p):
        return "p n/a"
    return f"p = {p:.2g}" if p >= 0.001 else "p < 0.001"


# ---------------------------------------------------------------------------------- main table
def _wide(df: pd.DataFrame, values: str, methods: list[str]) -> pd.DataFrame:
    """method x metric table of ``values`` (all-NaN columns kept: a std with one seed)."""
    wide = df.pivot_table(index="method", columns="metric", values=values, aggfunc="first", dropna=False)
    return wide.reindex(methods)


def main_table(summary: pd.DataFrame, significance: pd.DataFrame, dataset: str,
               metrics: list[str] | None = None, comparisons: pd.DataFrame | None = None) -> tuple[Table, str]:
    """(table, reading) of every method x metric on ``dataset`` (test split, mean ± std over seeds).

    The best baseline comes from ``significance`` (chosen on validation); the markers on PMTRec and
    the improvement row's interval from ``comparisons`` (Holm-corrected user-level test, seed
    interval): without it, no marker at all."""
    s = main_summary(summary, dataset)
    if s.empty:
        raise ReportError(f"summary.csv: no main-comparison test rows for dataset '{dataset}'")
    metrics = metrics or metrics_of(s)
    methods = style.order_methods(s["method"].unique())
    mean, std = _wide(s, "mean", methods), _wide(s, "std", methods)
    nseeds = s.groupby("method")["n"].max().reindex(methods)
    base = best_baseline(significance, dataset)
    table = Table(["Method"] + [style.metric_label(m) for m in metrics], font_size=7.5)
    columns = {m: metric_cells(mean[m].tolist(), std[m].tolist()) if m in mean else
               [Cell("–")] * len(methods) for m in metrics}
    for i, method in enumerate(methods):
        cells = [Cell(style.label(method) + (" (best baseline)" if method == base else ""), bold=method == REF)]
        for m in metrics:
            c = columns[m][i]
            if method == REF:
                c.sup = holm_marker(cmp_row(comparisons, dataset, base, m))
            cells.append(c)
        table.add(cells, highlight=method == REF, rule=method == REF and i > 0)
    if base is not None and REF in methods:
        row = [Cell(f"Improv. vs {style.label(base)} [95% CI]", italic=True)]
        for m in metrics:
            r = cmp_row(comparisons, dataset, base, m)
            if r is None:  # no comparison for this metric (only the tested ones): the point estimate
                sr = sig_row(significance, dataset, m)
                row.append(Cell(fmt_pct(sr["rel_improvement"]) if sr else "–", italic=True))
            else:
                row.append(Cell(fmt_improvement(r), italic=True))
        table.add(row, rule=True)
    n_text = _seed_text(nseeds)
    table.note = (f"Test split, mean ± std over {n_text}. Bold: best; underlined: second best (per column). "
                  + (f"Best baseline = highest mean validation NDCG@20 ({style.label(base)}). "
                     + _marker_note(comparisons, dataset, base, metrics) if base else "")
                  + deterministic_note(_deterministic(std)))
    table.data = main_data(s, significance, dataset, metrics, methods, base, comparisons)
    return table, main_reading(summary, significance, dataset, metrics, comparisons)


def _marker_note(comparisons: pd.DataFrame | None, dataset: str, base: str, metrics: list[str]) -> str:
    """What the markers mean, and why there are none when nothing was tested."""
    rows = [r for r in (cmp_row(comparisons, dataset, base, m) for m in metrics) if r is not None]
    if not rows:
        return "No significance markers: no comparisons table row for this baseline."
    text = ("Improvement: relative to it, with the 95% interval over seeds in %. Markers on PMTRec: paired "
            "sign-flip test over users against it, Holm-corrected over every comparison of the study, "
            "* p < 0.05, ** p < 0.01.")
    untested = [str(r["note"]) for r in rows if pd.isna(r.get("p_holm")) and isinstance(r.get("note"), str)]
    if untested:
        text += f" No marker where untested ({untested[0]})."
    return text


def _deterministic(std: pd.DataFrame) -> list[str]:
    """Labels of the methods whose std over seeds is exactly 0 on every metric (e.g. MostPop)."""
    zero = (std.abs() <= ZERO_STD).all(axis=1) & std.notna().all(axis=1)
    return [style.label(m) for m in zero[zero].index]


def main_data(s: pd.DataFrame, significance: pd.DataFrame, dataset: str, metrics: list[str],
              methods: list[str], base: str | None, comparisons: pd.DataFrame | None = None) -> pd.DataFrame:
    """The main table's numbers: one row per method and metric (PMTRec's rows: its comparison with
    the best baseline, Holm-corrected p and the seed interval)."""
    d = s[s["metric"].isin(metrics)][["method", "metric", "mean", "std", "n"]].rename(columns={"n": "n_seeds"})
    d = rank_flags(d, ["metric"])
    sig = significance[significance["dataset"] == dataset].set_index("metric")
    sig = sig.reindex(columns=list(dict.fromkeys([*sig.columns, "significant", "rel_improvement"])))
    ref = d["method"] == REF
    d["best_baseline"] = d["method"] == base
    comp = {m: cmp_row(comparisons, dataset, base, m) or {} for m in metrics}

    def from_comp(key: str) -> np.ndarray:
        return np.where(ref, d["metric"].map(lambda m: float(comp[m].get(key, np.nan))), np.nan)

    d["p_holm"] = from_comp("p_holm")
    d["significant"] = ref & (d["p_holm"] < 0.05)  # NaN (not tested): False
    d["rel_improvement"] = np.where(ref, d["metric"].map(sig["rel_improvement"]).astype(float), np.nan)
    d["diff_ci_low"], d["diff_ci_high"] = from_comp("ci_low"), from_comp("ci_high")
    d.insert(1, "label", d["method"].map(style.label))
    order = {m: i for i, m in enumerate(methods)}
    d = d.assign(_o=d["method"].map(order), _k=d["metric"].map(metrics.index))
    return d.sort_values(["_o", "_k"]).drop(columns=["_o", "_k"]).reset_index(drop=True)


def _seed_text(nseeds: pd.Series) -> str:
    vals = sorted({int(n) for n in nseeds.dropna()})
    if not vals:
        return "seeds"
    if len(vals) == 1:
        return f"{vals[0]} seed{'s' if vals[0] != 1 else ''}"
    return f"{vals[0]}–{vals[-1]} seeds"


def main_reading(summary: pd.DataFrame, significance: pd.DataFrame, dataset: str, metrics: list[str],
                 comparisons: pd.DataFrame | None = None) -> str:
    s = main_summary(summary, dataset)
    key = "ndcg@20" if "ndcg@20" in metrics else metrics[0]
    k = s[s["metric"] == key].set_index("method")["mean"].dropna().sort_values(ascending=False)
    if REF not in k.index:
        return (f"PMTRec has no main-comparison result on {dataset}; the best method by test "
                f"{style.metric_label(key)} is {style.label(k.index[0])} ({fmt_num(k.iloc[0])}).")
    rank = list(k.index).index(REF) + 1
    text = (f"On {dataset}, PMTRec's test {style.metric_label(key)} is {fmt_num(k[REF])}, "
            f"rank {rank} of {len(k)} methods.")
    r = sig_row(significance, dataset, key)
    if r is not None:
        rel = r["rel_improvement"]
        direction = "above" if rel >= 0 else "below"
        text += (f" The best baseline (chosen on validation NDCG@20) is {style.label(r['baseline'])} with "
                 f"{fmt_num(r['mean_baseline'])}, so PMTRec is {fmt_pct(abs(rel), sign=False)} {direction} it")
        c = cmp_row(comparisons, dataset, r["baseline"], key)
        if c is None:
            text += "."
        elif pd.isna(c.get("p_holm")):
            text += f" ({fmt_improvement(c)} with the 95% interval over seeds; {c['note']})."
        else:
            sig = "significant" if c["p_holm"] < 0.05 else "not significant"
            text += (f" ({fmt_improvement(c)} with the 95% interval over seeds; user-level test Holm-corrected "
                     f"{fmt_p(c['p_holm'])}, {sig} at α = 0.05).")
    wins = []
    for m in metrics:
        col = s[s["metric"] == m].set_index("method")["mean"].dropna()
        if REF in col.index and len(col) and math.isclose(col[REF], col.max(), rel_tol=0, abs_tol=5e-5):
            wins.append(style.metric_label(m))
    if len(wins) == len(metrics):
        text += f" PMTRec is best on all {len(metrics)} metrics of the table."
    else:
        text += (f" PMTRec is best on {len(wins)} of the {len(metrics)} metrics"
                 + (f" ({', '.join(wins)})." if wins else "."))
    base = best_baseline(significance, dataset)
    tested = [c for c in (cmp_row(comparisons, dataset, base, m) for m in metrics)
              if c is not None and not pd.isna(c.get("p_holm"))]
    if tested:
        n_sig = sum(c["p_holm"] < 0.05 for c in tested)
        text += (f" After the Holm correction the difference to the best baseline is significant on {n_sig} of "
                 f"{len(tested)} tested metrics.")
    return text


def main_plot(summary: pd.DataFrame, significance: pd.DataFrame, dataset: str, metrics: list[str] | None = None):
    """Dot plot: a panel per metric, methods on the y axis, mean ± std over seeds."""
    import matplotlib.pyplot as plt

    s = main_summary(summary, dataset)
    metrics = metrics or metrics_of(s)
    methods = style.order_methods(s["method"].unique())
    fams = list(dict.fromkeys(m.split("@")[0] for m in metrics))
    ks = list(dict.fromkeys(m.split("@")[1] for m in metrics))
    height = max(2.2, 0.15 * len(methods) + 0.9)
    fig, axes = plt.subplots(len(fams), len(ks), figsize=(style.FULL_WIDTH, height * len(fams)),
                             sharey=True, squeeze=False)
    base = best_baseline(significance, dataset)
    y = np.arange(len(methods))
    for r, fam in enumerate(fams):
        for c, k in enumerate(ks):
            ax = axes[r][c]
            metric = f"{fam}@{k}"
            d = s[s["metric"] == metric].set_index("method").reindex(methods)
            for i, m in enumerate(methods):
                mu, sd = d.loc[m, "mean"], d.loc[m, "std"]
                if pd.isna(mu):
                    continue
                em = style.emphasis(m)
                ax.errorbar(mu, i, xerr=0 if pd.isna(sd) else sd, fmt=style.marker(m), color=style.color(m),
                            ecolor=style.color(m), elinewidth=1.0, capsize=2,
                            markersize=em["markersize"], zorder=em["zorder"],
                            markeredgecolor=em.get("markeredgecolor", style.color(m)),
                            markeredgewidth=em.get("markeredgewidth", 0.5))
            if base is not None and base in d.index and not pd.isna(d.loc[base, "mean"]):
                ax.axvline(d.loc[base, "mean"], color=style.color(base), ls=":", lw=1, zorder=1)
            if REF in d.index and not pd.isna(d.loc[REF, "mean"]):
                ax.axhspan(methods.index(REF) - 0.5, methods.index(REF) + 0.5, color="#FCEBDF", zorder=0)
            ax.set_title(style.metric_label(metric))
            ax.set_yticks(y)
            ax.set_yticklabels([style.label(m) for m in methods])
            ax.set_ylim(len(methods) - 0.5, -0.5)
            ax.tick_params(axis="x", labelsize=style.FONT_SIZE - 2)
            ax.xaxis.set_major_locator(plt.MaxNLocator(4))
            ax.grid(axis="y", visible=False)
    for lab in axes[0][0].get_yticklabels() + (axes[1][0].get_yticklabels() if len(fams) > 1 else []):
        if lab.get_text() == style.label(REF):
            lab.set_fontweight("bold")
            lab.set_color(style.color(REF))
    fig.tight_layout(h_pad=1.2, w_pad=0.8)
    return fig


# -------------------------------------------------------------------------------------- ablation
def ablation_rows(ablation: pd.DataFrame, dataset: str, split: str = "test") -> pd.DataFrame:
    a = ablation[(ablation["dataset"] == dataset) & (ablation["split"] == split)]
    if a.empty:
        raise ReportError(f"ablation.csv: no {split} rows for dataset '{dataset}'")
    return a


def ablation_table(ablation: pd.DataFrame, dataset: str, metrics: list[str] | None = None,
                   key: str = "ndcg@20") -> tuple[Table, str]:
    a = ablation_rows(ablation, dataset)
    metrics = metrics or metrics_of(a)
    methods = style.order_methods(a["method"].unique())
    mean, std = _wide(a, "mean", methods), _wide(a, "std", methods)
    rel = a[a["metric"] == key].set_index("method")["rel_delta"].reindex(methods)
    cols = ["Variant"] + [style.metric_label(m) for m in metrics] + [f"Δ {style.metric_label(key)}"]
    table = Table(cols, font_size=7.5)
    columns = {m: metric_cells(mean[m].tolist(), std[m].tolist()) for m in metrics if m in mean}
    for i, method in enumerate(methods):
        cells = [Cell("PMTRec (full)" if method == REF else style.label(method), bold=method == REF)]
        cells += [columns[m][i] if m in columns else Cell("–") for m in metrics]
        cells.append(Cell("–" if method == REF else fmt_pct(rel[method])))
        table.add(cells, highlight=method == REF)
    n = a.groupby("method")["n"].max()
    table.note = (f"Test split, mean ± std over {_seed_text(n)} (the full model on the same seeds). "
                  f"Bold: best; underlined: second best. Δ: relative change of {style.metric_label(key)} "
                  "against the full model." + deterministic_note(_deterministic(std)))
    d = a[a["metric"].isin(metrics)][["method", "metric", "mean", "std", "n", "delta", "rel_delta"]]
    d = rank_flags(d.rename(columns={"n": "n_seeds"}), ["metric"])
    d.insert(1, "label", d["method"].map(lambda m: "PMTRec (full)" if m == REF else style.label(m)))
    table.data = d.assign(_o=d["method"].map(methods.index), _k=d["metric"].map(metrics.index)).sort_values(
        ["_o", "_k"]).drop(columns=["_o", "_k"]).reset_index(drop=True)
    return table, ablation_reading(a, dataset, key)


def ablation_reading(a: pd.DataFrame, dataset: str, key: str = "ndcg@20") -> str:
    k = a[a["metric"] == key].set_index("method")
    if REF not in k.index:
        return f"The full PMTRec model has no runs on {dataset} to compare the variants with."
    variants = k.drop(index=REF)
    if variants.empty:
        return f"No ablation variants ran on {dataset}."
    rel = variants["rel_delta"].sort_values()
    below = int((rel < 0).sum())
    n = len(variants)
    text = (f"On {dataset}, the full PMTRec reaches test {style.metric_label(key)} {fmt_num(k.loc[REF, 'mean'])}; "
            f"{below} of {n} variant{'s' if n != 1 else ''} score{'s' if n == 1 else ''} lower.")

    def one(m):
        return f"'{style.label(m)}' ({fmt_num(variants.loc[m, 'mean'])}, {fmt_pct(rel[m])})"

    if below:
        text += f" Switching a component off costs most for {one(rel.index[0])}"
        text += f" and least for {one(rel[rel < 0].index[-1])}." if below > 1 else "."
    ups = rel[rel > 0]
    if len(ups) == 1:
        text += f" {one(ups.index[0])} scores higher than the full model."
    elif len(ups) > 1:
        text += f" {len(ups)} variants score higher than the full model, most of all {one(ups.index[-1])}."
    return text


def ablation_deltas(runs: pd.DataFrame, datasets: list[str], metrics: tuple[str, ...] = ("recall@20", "ndcg@20"),
                    split: str = "test", level: float = 0.95) -> pd.DataFrame:
    """Per dataset, variant and metric: the paired difference variant − full PMTRec over the seeds
    both ran (runs.csv), its mean, ``level`` t-interval over seeds (NaN for one seed), n, and the
    mean relative to the full model's mean."""
    from scipy import stats

    cols = ["dataset", "method", "metric", "delta", "ci_low", "ci_high", "n_seeds", "full_mean", "rel_delta"]
    r = runs[(runs["split"] == split) & runs["dataset"].isin(datasets) & runs["metric"].isin(metrics)]
    keys = ["dataset", "metric", "seed"]
    full = r[(r["kind"] == "main") & (r["method"] == REF)][keys + ["value"]].rename(columns={"value": "full"})
    d = r[r["kind"] == "ablation"].merge(full, on=keys)
    if d.empty:
        return pd.DataFrame(columns=cols)
    d = d.assign(delta=d["value"] - d["full"])
    g = (d.groupby(["dataset", "method", "metric"], sort=False)
         .agg(delta=("delta", "mean"), sd=("delta", "std"), n_seeds=("delta", "size"), full_mean=("full", "mean"))
         .reset_index())
    n = g["n_seeds"].to_numpy(dtype=float)
    with np.errstate(all="ignore"):
        half = np.where(n > 1, stats.t.ppf(0.5 + level / 2, n - 1) * g["sd"].to_numpy() / np.sqrt(n), np.nan)
        g["rel_delta"] = np.where(g["full_mean"] != 0, g["delta"] / g["full_mean"], np.nan)
    g["ci_low"], g["ci_high"] = g["delta"] - half, g["delta"] + half
    return g[cols]


def ablation_plot(deltas: pd.DataFrame, metrics: tuple[str, ...] = ("recall@20", "ndcg@20")):
    """Dot plot: a panel per metric, a row per variant, its paired difference to the full model
    with the 95% interval over seeds; the zero line is the full model."""
    import matplotlib.pyplot as plt

    metrics = [m for m in metrics if m in set(deltas["metric"])]
    if deltas.empty or not metrics:
        raise ReportError("ablation: no variant shares a seed with the full PMTRec runs (runs.csv)")
    variants = style.order_methods(deltas["method"].unique())
    datasets = list(dict.fromkeys(deltas["dataset"]))
    fig, axes = plt.subplots(1, len(metrics), figsize=(style.FULL_WIDTH, 0.9 + 0.32 * len(variants) * len(datasets)),
                             sharey=True, squeeze=False)
    step = 0.7 / len(datasets)  # datasets side by side within a variant's row
    for ax, metric in zip(axes[0], metrics):
        d = deltas[deltas["metric"] == metric]
        ax.axvline(0, color="#333333", lw=0.9, zorder=1)
        for j, ds in enumerate(datasets):
            dd = d[d["dataset"] == ds].set_index("method").reindex(variants)
            y = np.arange(len(variants)) + (j - (len(datasets) - 1) / 2) * step
            err = np.vstack([dd["delta"] - dd["ci_low"], dd["ci_high"] - dd["delta"]])
            ax.errorbar(dd["delta"], y, xerr=np.nan_to_num(err), fmt="none", ecolor="#555555", elinewidth=1.0,
                        capsize=2.5, zorder=2)
            ax.scatter(dd["delta"], y, c=[style.color(m) for m in variants], marker=_MARKS[j % len(_MARKS)],
                       s=30, edgecolors="black", linewidths=0.4, zorder=3, label=ds)
        lim = np.nanmax(np.abs(d[["ci_low", "ci_high", "delta"]].to_numpy(dtype=float)))
        lim = lim * 1.15 if np.isfinite(lim) and lim > 0 else 1e-3
        ax.set_xlim(-lim, lim)  # symmetric about the full model: left is worse, right better
        ax.set_title(f"test {style.metric_label(metric)}")
        ax.set_xlabel("variant − full PMTRec")
        ax.xaxis.set_major_locator(plt.MaxNLocator(5, symmetric=True))
        ax.grid(axis="y", visible=False)
    axes[0][0].set_yticks(np.arange(len(variants)))
    axes[0][0].set_yticklabels([style.label(m) for m in variants])
    axes[0][0].set_ylim(len(variants) - 0.5, -0.5)
    if len(datasets) > 1:
        axes[0][-1].legend(title="dataset", loc="best")
    fig.tight_layout()
    return fig


_MARKS = ("o", "s", "^", "D", "v", "P")


def main_plot_reading(summary: pd.DataFrame, significance: pd.DataFrame, dataset: str,
                      metrics: list[str] | None = None) -> str:
    s = main_summary(summary, dataset)
    metrics = metrics or metrics_of(s)
    base = best_baseline(significance, dataset)
    if base is None or REF not in set(s["method"]):
        return (f"Each panel shows one metric on {dataset}: the dots are means over seeds, the bars ± one std.")
    right, widths = 0, []
    for m in metrics:
        d = s[s["metric"] == m].set_index("method")
        if REF in d.index and base in d.index:
            right += int(d.loc[REF, "mean"] > d.loc[base, "mean"])
            if not pd.isna(d.loc[REF, "std"]) and d.loc[base, "mean"]:
                widths.append(d.loc[REF, "std"] / d.loc[base, "mean"])
    text = (f"Dots are means over seeds, bars ± one std; the dotted line marks the best baseline "
            f"({style.label(base)}). On {dataset}, PMTRec (star, shaded row) lies right of that line on {right} of "
            f"{len(metrics)} metrics")
    if widths:
        text += (f"; its seed-to-seed std is {fmt_pct(float(np.mean(widths)), sign=False)} of the baseline's "
                 "mean on average")
    return text + "."


def ablation_plot_reading(deltas: pd.DataFrame, key: str = "ndcg@20") -> str:
    d = deltas[deltas["metric"] == key]
    if d.empty:
        return "No ablation variants to compare."
    n = int(d["n_seeds"].max())
    text = (f"Each dot is a variant's mean paired difference to the full PMTRec over {n} seed{'s' if n != 1 else ''}"
            + (", the bar its 95% t-interval" if n > 1 else "") + "; left of the zero line is worse than the full "
            f"model. On {style.metric_label(key)}, ")
    parts = []
    for _, r in d.sort_values("delta").iterrows():
        where = ("" if pd.isna(r["ci_low"]) else " (interval below zero)" if r["ci_high"] < 0 else
                 " (interval above zero)" if r["ci_low"] > 0 else " (interval includes zero)")
        ds = f" on {r['dataset']}" if d["dataset"].nunique() > 1 else ""
        parts.append(f"{style.label(r['method'])}{ds} {r['delta']:+.4f} ({fmt_pct(r['rel_delta'])}){where}")
    return text + "; ".join(parts) + "."
