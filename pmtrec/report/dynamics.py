"""Training dynamics: validation NDCG@20 per epoch, task weights over epochs, task-gradient cosines."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from pmtrec.report import style
from pmtrec.report.data import ReportError
from pmtrec.report.tables import fmt_num

REF = style.REFERENCE


def _main(df: pd.DataFrame, dataset: str) -> pd.DataFrame:
    return df[(df["dataset"] == dataset) & (df["kind"] == "main")]


def _legend_below(fig, axes, ncol: int) -> None:
    handles, labels = [], []
    for ax in np.ravel(axes):
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    rows = math.ceil(len(labels) / ncol)
    fig.legend(handles, labels, loc="lower center", ncol=ncol, bbox_to_anchor=(0.5, 0.0),
               fontsize=style.FONT_SIZE - 1.5, handlelength=2.2, columnspacing=1.2)
    h = fig.get_size_inches()[1]
    fig.tight_layout(rect=(0, min(0.45, (0.22 * rows + 0.1) / h), 1, 1))


# ---------------------------------------------------------------------------------- valid curve
def valid_curves(curves: pd.DataFrame, dataset: str, metric: str = "ndcg@20") -> pd.DataFrame:
    c = _main(curves, dataset)
    c = c[(c["series"] == "valid") & (c["key"] == metric)]
    if c.empty:
        raise ReportError(f"curves.csv: no main-comparison validation {metric} rows on dataset '{dataset}'")
    return c.groupby(["method", "epoch"])["value"].agg(["mean", "std"]).reset_index()


def valid_plot(vc: pd.DataFrame, metric: str = "ndcg@20"):
    import matplotlib.pyplot as plt

    methods = style.order_methods(vc["method"].unique())
    fig, ax = plt.subplots(figsize=(style.FULL_WIDTH, 3.2 + 0.22 * math.ceil(len(methods) / 5)))
    for m in methods:
        d = vc[vc["method"] == m].sort_values("epoch")
        em = style.emphasis(m)
        ax.plot(d["epoch"], d["mean"], marker=style.marker(m), color=style.color(m), label=style.label(m),
                linewidth=em["linewidth"], markersize=em["markersize"] * 0.75, zorder=em["zorder"],
                markeredgecolor=em.get("markeredgecolor", style.color(m)),
                markeredgewidth=em.get("markeredgewidth", 0.4))
        if m == REF and d["std"].notna().any():
            ax.fill_between(d["epoch"], d["mean"] - d["std"], d["mean"] + d["std"], color=style.color(m),
                            alpha=0.18, linewidth=0, zorder=em["zorder"] - 1)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"validation {style.metric_label(metric)}")
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    _legend_below(fig, [ax], ncol=5)
    return fig


def valid_reading(vc: pd.DataFrame, dataset: str, metric: str = "ndcg@20") -> str:
    best = vc.loc[vc.groupby("method")["mean"].idxmax()].set_index("method")
    if REF not in best.index:
        return f"PMTRec has no training curve on {dataset}."
    text = (f"On {dataset}, PMTRec's mean validation {style.metric_label(metric)} peaks at "
            f"{fmt_num(best.loc[REF, 'mean'])} in epoch {int(best.loc[REF, 'epoch'])}")
    others = best.drop(index=REF)
    if not others.empty:
        top = others["mean"].idxmax()
        text += (f"; the highest peak among the other methods is {style.label(top)}'s "
                 f"({fmt_num(others.loc[top, 'mean'])}, epoch {int(others.loc[top, 'epoch'])})")
        ref_curve = vc[vc["method"] == REF].set_index("epoch")["mean"]
        reach = ref_curve[ref_curve >= others.loc[top, "mean"]]
        if not reach.empty:
            text += f". PMTRec first reaches that level in epoch {int(reach.index.min())}"
    return text + ". The band around PMTRec's curve is ± one std over seeds."


# --------------------------------------------------------------------------------- task weights
def task_weights(curves: pd.DataFrame, dataset: str) -> pd.DataFrame:
    c = _main(curves, dataset)
    c = c[c["series"] == "weight"]
    if c.empty:
        raise ReportError(f"curves.csv: no task-weight rows on dataset '{dataset}'")
    out = c.groupby(["method", "epoch", "key"])["value"].mean().reset_index().rename(columns={"key": "task"})
    ntasks = out.groupby("method")["task"].nunique()
    return out[out["method"].isin(ntasks[ntasks > 1].index)]


def weights_plot(tw: pd.DataFrame, ncols: int = 5):
    import matplotlib.pyplot as plt

    methods = style.order_methods(tw["method"].unique())
    if not methods:
        raise ReportError("curves.csv: no multi-task method logged task weights")
    ncols = min(ncols, len(methods))
    nrows = math.ceil(len(methods) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(style.FULL_WIDTH, 1.45 * nrows + 0.5), squeeze=False,
                             sharex=True)
    for ax, m in zip(axes.ravel(), methods):
        d = tw[tw["method"] == m]
        for task in style.order_tasks(d["task"].unique()):
            dt = d[d["task"] == task].sort_values("epoch")
            ax.plot(dt["epoch"], dt["value"], color=style.task_color(task), label=style.task_label(task),
                    linewidth=1.4)
        ax.set_title(style.label(m), fontsize=style.FONT_SIZE - 1,
                     color=style.color(REF) if m == REF else "black", fontweight="bold" if m == REF else None)
        ax.yaxis.set_major_locator(plt.MaxNLocator(nbins=3))
    _finish_panels(fig, axes, len(methods), "weight", ncol=4)
    return fig


def weights_reading(tw: pd.DataFrame, dataset: str) -> str:
    last = tw[tw["epoch"] == tw.groupby("method")["epoch"].transform("max")]
    if REF not in set(last["method"]):
        return f"On {dataset}, PMTRec logged no task weights."
    ref = last[last["method"] == REF].set_index("task")["value"]
    own = tw[tw["method"] == REF]
    first = own[own["epoch"] == own["epoch"].min()].set_index("task")["value"]
    share = ref / ref.sum() if ref.sum() else ref
    text = (f"On {dataset}, PMTRec's batch-mean weights in its last epoch are "
            + ", ".join(f"{style.task_label(t)} {fmt_num(ref[t], 3)}" for t in style.order_tasks(ref.index))
            + f" (the main task holds {share.get('rec', float('nan')) * 100:.0f}% of the total)")
    if "rec" in first.index and "rec" in ref.index:
        text += f"; its main-task weight moves from {fmt_num(first['rec'], 3)} in the first epoch"
        text += f" to {fmt_num(ref['rec'], 3)}"
    varying = last.groupby("method")["value"].std().fillna(0)
    fixed = [style.label(m) for m, v in varying.items() if v < 1e-9 and m != REF]
    if fixed:
        text += f". Methods whose final task weights are all equal: {', '.join(fixed)}"
    return text + "."


# -------------------------------------------------------------------------------------- cosines
def cosine_curves(cosines: pd.DataFrame, dataset: str) -> pd.DataFrame:
    c = _main(cosines, dataset)
    return c.groupby(["method", "epoch", "pair", "task_a", "task_b"])["cosine"].mean().reset_index()


def cosine_plot(cc: pd.DataFrame, ncols: int = 3):
    import matplotlib.pyplot as plt

    def tidx(t):
        return (style.TASK_ORDER.index(t) if t in style.TASK_ORDER else len(style.TASK_ORDER), t)

    pairs = sorted(cc["pair"].unique(), key=lambda p: tuple(tidx(t) for t in p.split("|")))
    methods = style.order_methods(cc["method"].unique())
    ncols = min(ncols, len(pairs))
    nrows = math.ceil(len(pairs) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(style.FULL_WIDTH, 1.8 * nrows + 0.4), squeeze=False,
                             sharex=True, sharey=True)
    for ax, pair in zip(axes.ravel(), pairs):
        d = cc[cc["pair"] == pair]
        for m in methods:
            dm = d[d["method"] == m].sort_values("epoch")
            if dm.empty:
                continue
            em = style.emphasis(m)
            ax.plot(dm["epoch"], dm["cosine"], color=style.color(m), marker=style.marker(m), label=style.label(m),
                    linewidth=em["linewidth"] * 0.8, markersize=em["markersize"] * 0.55, zorder=em["zorder"])
        a, b = pair.split("|")
        ax.set_title(f"{style.task_label(a)} · {style.task_label(b)}", fontsize=style.FONT_SIZE - 1)
        ax.axhline(0, color="#888888", lw=0.7, zorder=1)
    _finish_panels(fig, axes, len(pairs), "cosine", ncol=5)
    return fig


def _finish_panels(fig, axes, n_used: int, ylabel: str, ncol: int) -> None:
    """Shared layout of the per-epoch panel grids: ticks, hidden spare panels, axis labels, legend."""
    import matplotlib.pyplot as plt

    for ax in axes.ravel()[:n_used]:
        ax.tick_params(labelsize=style.FONT_SIZE - 2.5)
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True, nbins=4))
    for ax in axes.ravel()[n_used:]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("epoch", fontsize=style.FONT_SIZE - 1.5)
    for row in axes:
        row[0].set_ylabel(ylabel, fontsize=style.FONT_SIZE - 1.5)
    _legend_below(fig, axes, ncol=ncol)


def cosine_reading(cc: pd.DataFrame, dataset: str) -> str:
    last = cc[cc["epoch"] == cc.groupby("method")["epoch"].transform("max")]
    per_pair = last.groupby("pair")["cosine"].mean().sort_values()

    def name(pair: str) -> str:
        return " · ".join(style.task_label(t) for t in pair.split("|"))

    neg = int((last["cosine"] < 0).sum())
    n = last["method"].nunique()
    text = (f"On {dataset}, averaged over the {n} method{'s' if n != 1 else ''} that compute task gradients, the "
            f"last-epoch cosine is lowest for {name(per_pair.index[0])} "
            f"({per_pair.iloc[0]:+.3f}) and highest for {name(per_pair.index[-1])} "
            f"({per_pair.iloc[-1]:+.3f}); {neg} of {len(last)} method-pair values are negative (conflicting).")
    ref = last[last["method"] == REF]
    if not ref.empty and "rec|social" in set(ref["pair"]):
        value = float(ref[ref["pair"] == "rec|social"]["cosine"].iloc[0])
        text += f" For PMTRec, {name('rec|social')} ends at {value:+.3f}."
    return text
