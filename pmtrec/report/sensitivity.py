"""Sensitivity: NDCG@20 over PMTRec's hyperparameter grid (heat map) and over the embedding size."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pmtrec.report import style
from pmtrec.report.data import ReportError
from pmtrec.report.tables import fmt_num, fmt_pct

REF = style.REFERENCE
FIXED_COLUMNS = {"dataset", "method", "sweep", "variant", "split", "metric", "mean", "std", "n"}
PARAM_LABELS = {"tau": "τ (temperature)", "focus_max": "focus_max", "model.dim": "embedding size"}


def param_columns(sens: pd.DataFrame) -> list[str]:
    """The swept parameters: the columns aggregate adds between ``variant`` and ``split``."""
    return [c for c in sens.columns if c not in FIXED_COLUMNS]


def grid_rows(sens: pd.DataFrame, dataset: str, metric: str = "ndcg@20",
              split: str = "test") -> tuple[pd.DataFrame, list[str]]:
    s = sens[(sens["dataset"] == dataset) & (sens["sweep"] == "grid") & (sens["metric"] == metric)
             & (sens["split"] == split)]
    params = [p for p in param_columns(sens) if s[p].notna().any()] if not s.empty else []
    # a parameter with one value is not swept
    params = [p for p in params if s[p].nunique() > 1] or params
    return s, params


def param_label(p: str) -> str:
    return PARAM_LABELS.get(p, p)


def _fmt_value(v) -> str:
    f = float(v)
    return f"{int(f)}" if f.is_integer() and abs(f) >= 1 else f"{f:g}"


def grid_plot(s: pd.DataFrame, params: list[str], metric: str = "ndcg@20"):
    """Heat map over the first two parameters (others averaged), or a line over a single one."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    if not params:
        raise ReportError("sensitivity.csv: the grid sweep has no parameter columns")
    if len(params) >= 2:
        a, b = params[:2]
        piv = s.groupby([a, b])["mean"].mean().unstack(b).sort_index().sort_index(axis=1)
        fig, ax = plt.subplots(figsize=(min(style.FULL_WIDTH, 1.0 + 0.95 * piv.shape[1] + 1.2),
                                        0.9 + 0.5 * piv.shape[0] + 0.6))
        sns.heatmap(piv, annot=True, fmt=".4f", cmap="viridis", ax=ax, linewidths=0.6, linecolor="white",
                    annot_kws={"fontsize": style.FONT_SIZE - 1.5},
                    cbar_kws={"label": f"test {style.metric_label(metric)}", "shrink": 0.9})
        best = np.unravel_index(np.nanargmax(piv.to_numpy()), piv.shape)
        ax.add_patch(plt.Rectangle((best[1], best[0]), 1, 1, fill=False, edgecolor=style.color(REF), lw=2.2))
        ax.set_xticklabels([_fmt_value(v) for v in piv.columns], rotation=0)
        ax.set_yticklabels([_fmt_value(v) for v in piv.index], rotation=0)
        ax.set_xlabel(param_label(b))
        ax.set_ylabel(param_label(a))
    else:
        p = params[0]
        d = s.groupby(p).agg(mean=("mean", "mean"), std=("std", "mean")).reset_index().sort_values(p)
        fig, ax = plt.subplots(figsize=(style.HALF_WIDTH * 1.3, 2.4))
        ax.errorbar(d[p], d["mean"], yerr=d["std"].fillna(0), color=style.color(REF), marker="o", capsize=2)
        if (d[p] > 0).all() and d[p].max() / max(d[p].min(), 1e-12) >= 8:
            ax.set_xscale("log", base=2)
        ax.set_xticks(d[p])
        ax.set_xticklabels([_fmt_value(v) for v in d[p]])
        ax.set_xlabel(param_label(p))
        ax.set_ylabel(f"test {style.metric_label(metric)}")
    fig.tight_layout()
    return fig


def grid_caption(params: list[str], method: str, dataset: str, metric: str = "ndcg@20") -> str:
    what = " × ".join(param_label(p) for p in params[:2])
    if len(params) >= 2:
        extra = "; parameters beyond the first two averaged" if len(params) > 2 else ""
        return (f"Test {style.metric_label(metric)} of {style.label(method)} over {what} on {dataset} "
                f"(mean over seeds; the best point is framed{extra}).")
    return f"Test {style.metric_label(metric)} of {style.label(method)} over {what} on {dataset} (± std over seeds)."


def grid_reading(s: pd.DataFrame, params: list[str], dataset: str, method: str, metric: str = "ndcg@20") -> str:
    g = s.groupby(params)["mean"].mean()
    best, worst = g.idxmax(), g.idxmin()

    def point(idx):
        idx = idx if isinstance(idx, tuple) else (idx,)
        return ", ".join(f"{p} = {_fmt_value(v)}" for p, v in zip(params, idx))

    if len(g) == 1:
        return (f"On {dataset}, the sensitivity grid has a single point ({point(best)}), where "
                f"{style.label(method)}'s test {style.metric_label(metric)} is {fmt_num(g.iloc[0])}; "
                "widen config key sensitivity.grid to see a trend.")
    spread = (g.max() - g.min()) / g.max() if g.max() else float("nan")
    n = int(s["n"].max()) if "n" in s else 0
    return (f"On {dataset}, {style.label(method)}'s test {style.metric_label(metric)} over the {len(g)} grid points "
            f"is highest at {point(best)} ({fmt_num(g.max())}) and lowest at {point(worst)} ({fmt_num(g.min())}); "
            f"the worst setting is {fmt_pct(spread, sign=False)} below the best "
            f"(each point: mean over {n} seed{'s' if n != 1 else ''}).")


def dim_rows(sens: pd.DataFrame, dataset: str, metric: str = "ndcg@20", split: str = "test") -> pd.DataFrame:
    s = sens[(sens["dataset"] == dataset) & (sens["sweep"] == "dim") & (sens["metric"] == metric)
             & (sens["split"] == split)]
    if s.empty:
        return s
    col = "model.dim" if "model.dim" in s.columns else next(c for c in param_columns(sens) if s[c].notna().any())
    return s.assign(dim=s[col].astype(float))


def dim_plot(d: pd.DataFrame, metric: str = "ndcg@20"):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(style.HALF_WIDTH * 1.3, 2.5))
    for m in style.order_methods(d["method"].unique()):
        dm = d[d["method"] == m].sort_values("dim")
        em = style.emphasis(m)
        ax.errorbar(dm["dim"], dm["mean"], yerr=dm["std"].fillna(0), color=style.color(m), marker=style.marker(m),
                    label=style.label(m), capsize=2, linewidth=em["linewidth"], markersize=em["markersize"] * 0.8,
                    zorder=em["zorder"])
    dims = sorted(d["dim"].unique())
    if len(dims) > 1 and min(dims) > 0:
        ax.set_xscale("log", base=2)
    ax.set_xticks(dims)
    ax.set_xticklabels([_fmt_value(v) for v in dims])
    ax.minorticks_off()
    ax.set_xlabel("embedding size")
    ax.set_ylabel(f"test {style.metric_label(metric)}")
    ax.legend(loc="best")
    fig.tight_layout()
    return fig


def dim_reading(d: pd.DataFrame, dataset: str, metric: str = "ndcg@20") -> str:
    if d["dim"].nunique() == 1:
        dim = _fmt_value(d["dim"].iloc[0])
        vals = "; ".join(f"{style.label(m)} {fmt_num(v)}" for m, v in d.groupby("method")["mean"].mean().items())
        return (f"On {dataset}, only embedding size {dim} was swept (test {style.metric_label(metric)}: {vals}); "
                "add sizes to config key sensitivity.dim to see a trend.")
    parts = []
    for m in style.order_methods(d["method"].unique()):
        dm = d[d["method"] == m].set_index("dim")["mean"]
        parts.append(f"{style.label(m)} is best at size {_fmt_value(dm.idxmax())} ({fmt_num(dm.max())})"
                     + (f" and worst at {_fmt_value(dm.idxmin())} ({fmt_num(dm.min())})" if len(dm) > 1 else ""))
    text = f"On {dataset}, over embedding sizes {', '.join(_fmt_value(v) for v in sorted(d['dim'].unique()))}: "
    text += "; ".join(parts) + "."
    methods = set(d["method"])
    if REF in methods and len(methods) > 1:
        piv = d.pivot_table(index="dim", columns="method", values="mean", dropna=False)
        others = piv.drop(columns=REF)
        wins = int((piv[REF] >= others.max(axis=1)).sum())
        text += f" PMTRec is the best method at {wins} of {len(piv)} sizes."
    return text
