"""Personalization: PMTRec's per-row task weights by activity group, and per-group accuracy."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pmtrec.report import style
from pmtrec.report.data import ReportError
from pmtrec.report.tables import ZERO_STD, Cell, Table, deterministic_note, fmt_int, fmt_num, fmt_pct, metric_cells, rank_flags

REF = style.REFERENCE
TABLE_NAMES = {"user": "users by activity", "item": "items by popularity"}


def group_label(g: str, n: int, noun: str = "active") -> str:
    i = int(g)
    if i == 0:
        return f"{i + 1}\n(least {noun})"
    if i == n - 1:
        return f"{i + 1}\n(most {noun})"
    return str(i + 1)


def has_row_weights(row_weights: pd.DataFrame, dataset: str, method: str = REF, kind: str = "main") -> bool:
    """Whether the study logged ``method``'s per-row weights on ``dataset`` (PMTRec runs only)."""
    return bool(((row_weights["dataset"] == dataset) & (row_weights["method"] == method)
                 & (row_weights["kind"] == kind)).any())


def no_row_weights_reading(dataset: str, method: str = REF) -> str:
    return (f"No per-row task weights on {dataset}: this study has no main-comparison run of "
            f"{style.label(method)}, the method that logs them; the accuracy per user group follows.")


def final_row_weights(row_weights: pd.DataFrame, dataset: str, method: str = REF, kind: str = "main") -> pd.DataFrame:
    """Mean row weight per (table, group, task) at each run's last epoch: mean and std over seeds."""
    rw = row_weights[(row_weights["dataset"] == dataset) & (row_weights["method"] == method)
                     & (row_weights["kind"] == kind)]
    if rw.empty:
        raise ReportError(f"row_weights.csv: no {kind} rows of {method} on dataset '{dataset}' "
                          "(per-row weights are logged by PMTRec runs only)")
    last = rw.groupby("seed")["epoch"].transform("max")
    rw = rw[rw["epoch"] == last]
    out = (rw.groupby(["table", "group", "task"])["weight"].agg(["mean", "std", "count"]).reset_index())
    out["group_i"] = out["group"].astype(int)
    # a task whose weight is 0 everywhere in a table does not act on that table's rows
    active = out.groupby(["table", "task"])["mean"].transform(lambda v: (v.abs() > 1e-12).any())
    return out[active].sort_values(["table", "group_i", "task"]).reset_index(drop=True)


def row_weight_plot(weights: pd.DataFrame):
    import matplotlib.pyplot as plt

    tables = [t for t in ("user", "item") if t in set(weights["table"])]
    fig, axes = plt.subplots(1, len(tables), figsize=(style.FULL_WIDTH, 2.9), squeeze=False, sharey=True)
    for ax, table in zip(axes[0], tables):
        w = weights[weights["table"] == table]
        tasks = style.order_tasks(w["task"].unique())
        groups = sorted(w["group_i"].unique())
        width = 0.8 / len(tasks)
        for j, task in enumerate(tasks):
            d = w[w["task"] == task].set_index("group_i").reindex(groups)
            ax.bar(np.arange(len(groups)) - 0.4 + width * (j + 0.5), d["mean"], width * 0.92,
                   yerr=style.errbars(d["std"]), color=style.task_color(task), capsize=1.5,
                   error_kw={"elinewidth": 0.7}, label=style.task_label(task))
        noun = "active" if table == "user" else "popular"
        ax.set_xticks(np.arange(len(groups)))
        ax.set_xticklabels([group_label(str(g), len(groups), noun) for g in groups])
        ax.set_xlabel("user-activity group" if table == "user" else "item-popularity group")
        ax.set_title(f"Rows of {TABLE_NAMES[table]}")
        ax.grid(axis="x", visible=False)
    axes[0][0].set_ylabel("mean row weight (last epoch)")
    handles: dict = {}
    for ax in axes[0]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=len(handles),
               bbox_to_anchor=(0.5, 0.0))
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def row_weight_reading(weights: pd.DataFrame, dataset: str) -> str:
    parts = []
    for table in ("user", "item"):
        w = weights[(weights["table"] == table) & (weights["task"] == "rec")]
        if len(w) < 2:
            continue
        lo, hi = w.loc[w["group_i"].idxmin()], w.loc[w["group_i"].idxmax()]
        what = "least active users" if table == "user" else "least popular items"
        other = "most active" if table == "user" else "most popular"
        trend = "more" if hi["mean"] > lo["mean"] else "less"
        parts.append(f"the main task's weight on the rows of the {what} is {fmt_num(lo['mean'], 3)}, against "
                     f"{fmt_num(hi['mean'], 3)} for the {other} ones")
        aux = weights[(weights["table"] == table) & (weights["task"] != "rec") & (weights["group_i"] == lo["group_i"])]
        if not aux.empty:
            top = aux.loc[aux["mean"].idxmax()]
            parts[-1] += (f" (their largest auxiliary weight: {style.task_label(top['task'])}, "
                          f"{fmt_num(top['mean'], 3)})")
        parts[-1] += f", so PMTRec leans {trend} on the main task as activity grows" if table == "user" else ""
    if not parts:
        return f"PMTRec logged no per-row weights on {dataset}."
    return f"On {dataset}, " + "; ".join(parts) + "."


# ------------------------------------------------------------------------------ group accuracy
def group_methods(significance: pd.DataFrame, groups: pd.DataFrame, dataset: str) -> list[str]:
    """PMTRec, EW and the best baseline (when present), in that order."""
    have = set(groups[(groups["dataset"] == dataset) & (groups["kind"] == "main")]["method"])
    s = significance[significance["dataset"] == dataset]
    base = str(s["baseline"].iloc[0]) if not s.empty else None
    return [m for m in dict.fromkeys([REF, "ew", base]) if m and m in have]


def group_accuracy(groups: pd.DataFrame, dataset: str, methods: list[str], metric: str = "ndcg@20") -> pd.DataFrame:
    g = groups[(groups["dataset"] == dataset) & (groups["kind"] == "main") & (groups["metric"] == metric)
               & groups["method"].isin(methods)]
    if g.empty:
        raise ReportError(f"groups.csv: no main-comparison {metric} rows on dataset '{dataset}'")
    out = g.groupby(["method", "group"]).agg(mean=("value", "mean"), std=("value", "std"),
                                             n_users=("n_users", "max"), n=("seed", "nunique")).reset_index()
    out["group_i"] = out["group"].astype(int)
    return out.sort_values(["group_i", "method"]).reset_index(drop=True)


def group_table(acc: pd.DataFrame, methods: list[str], base: str | None, metric: str = "ndcg@20") -> Table:
    groups = sorted(acc["group_i"].unique())
    cols = ["Group", "Users"] + [style.label(m) for m in methods]
    show_delta = base is not None and base in methods and REF in methods and base != REF
    if show_delta:
        cols.append(f"PMTRec vs {style.label(base)}")
    table = Table(cols, font_size=8)
    mean = acc.pivot_table(index="group_i", columns="method", values="mean", dropna=False).reindex(groups)
    std = acc.pivot_table(index="group_i", columns="method", values="std", dropna=False).reindex(groups)
    users = acc.groupby("group_i")["n_users"].max().reindex(groups)
    per_row = {g: metric_cells(mean.loc[g, methods].tolist(), std.loc[g, methods].tolist()) for g in groups}
    for g in groups:
        cells = [Cell(group_label(str(g), len(groups)).replace("\n", " ")), Cell(fmt_int(users[g]))] + per_row[g]
        if show_delta:
            cells.append(Cell(fmt_pct((mean.loc[g, REF] - mean.loc[g, base]) / mean.loc[g, base])))
        table.add(cells)
    table.note = (f"Test {style.metric_label(metric)} per user-activity group (quantiles of the users' training "
                  "interactions), mean ± std over seeds; bold: best in the row, underlined: second."
                  + deterministic_note(style.label(m) for m in methods if (std[m].abs() <= ZERO_STD).all()))
    d = acc[acc["method"].isin(methods)][["group_i", "n_users", "method", "mean", "std", "n"]]
    d = d.rename(columns={"group_i": "group", "n": "n_seeds"})
    d = rank_flags(d, ["group"]).assign(metric=metric)
    if show_delta:  # the last column: PMTRec's relative difference to the best baseline in the group
        rel = (mean[REF] - mean[base]) / mean[base]
        d["rel_vs_baseline"] = np.where(d["method"] == REF, d["group"].map(rel), np.nan)
    table.data = d.reset_index(drop=True)
    return table


def group_plot(acc: pd.DataFrame, methods: list[str], metric: str = "ndcg@20"):
    import matplotlib.pyplot as plt

    groups = sorted(acc["group_i"].unique())
    fig, ax = plt.subplots(figsize=(style.FULL_WIDTH * 0.75, 2.7))
    width = 0.8 / len(methods)
    for j, m in enumerate(methods):
        d = acc[acc["method"] == m].set_index("group_i").reindex(groups)
        ax.bar(np.arange(len(groups)) - 0.4 + width * (j + 0.5), d["mean"], width * 0.92,
               yerr=style.errbars(d["std"]),
               color=style.color(m), edgecolor="black" if m == REF else "white", linewidth=0.8 if m == REF else 0.3,
               capsize=1.5, error_kw={"elinewidth": 0.7}, label=style.label(m))
    users = acc.groupby("group_i")["n_users"].max().reindex(groups)
    ax.set_xticks(np.arange(len(groups)))
    ax.set_xticklabels([f"{group_label(str(g), len(groups))}\n{int(users[g]):,} users" for g in groups],
                       fontsize=style.FONT_SIZE - 2)
    ax.set_xlabel("user-activity group")
    ax.set_ylabel(f"test {style.metric_label(metric)}")
    ax.grid(axis="x", visible=False)
    ax.legend(loc="upper left", ncol=len(methods))
    ax.set_ylim(0, ax.get_ylim()[1] * 1.12)
    fig.tight_layout()
    return fig


def group_reading(acc: pd.DataFrame, methods: list[str], base: str | None, dataset: str,
                  metric: str = "ndcg@20") -> str:
    if REF not in methods:
        return f"PMTRec has no per-group results on {dataset}."
    mean = acc.pivot_table(index="group_i", columns="method", values="mean", dropna=False)
    groups = sorted(mean.index)
    other = base if base in methods and base != REF else ("ew" if "ew" in methods else None)
    if other is None:
        return f"On {dataset}, PMTRec's {style.metric_label(metric)} ranges from {fmt_num(mean[REF].min())} to " \
               f"{fmt_num(mean[REF].max())} across the user-activity groups."
    rel = (mean[REF] - mean[other]) / mean[other]
    gmax = rel.idxmax()
    lo, hi = groups[0], groups[-1]
    return (f"On {dataset}, PMTRec's {style.metric_label(metric)} against {style.label(other)} changes by "
            f"{fmt_pct(rel[lo])} for the least active users (group 1) and {fmt_pct(rel[hi])} for the most active "
            f"(group {len(groups)}); the largest relative gain is in group {int(gmax) + 1} ({fmt_pct(rel[gmax])}). "
            f"PMTRec beats {style.label(other)} in {int((rel > 0).sum())} of {len(groups)} groups.")


def group_plot_reading(acc: pd.DataFrame, methods: list[str], dataset: str, metric: str = "ndcg@20") -> str:
    mean = acc.pivot_table(index="group_i", columns="method", values="mean", dropna=False)
    groups = sorted(mean.index)
    parts = []
    for m in methods:
        lo, hi = mean.loc[groups[0], m], mean.loc[groups[-1], m]
        parts.append(f"{style.label(m)} from {fmt_num(lo)} to {fmt_num(hi)}")
    trend = "rises" if mean.loc[groups[-1]].mean() > mean.loc[groups[0]].mean() else "falls"
    return (f"On {dataset}, test {style.metric_label(metric)} {trend} from the least to the most active users: "
            + "; ".join(parts) + ". Error bars are ± one std over seeds; the labels give the users per group.")


def headroom_table(headroom: pd.DataFrame, dataset: str, metric: str = "ndcg@20") -> tuple[Table, str]:
    """(table, reading): per user-activity group the best method there against the best method
    overall, and the per-group oracle (row "all"), from headroom.csv."""
    h = headroom[(headroom["dataset"] == dataset) & (headroom["metric"] == metric)]
    if h.empty:
        raise ReportError(f"headroom.csv: no rows for dataset '{dataset}' and metric '{metric}'")
    groups = h[h["group"] != "all"]
    n = len(groups)
    table = Table(["User group", "Users", "Best there", style.metric_label(metric), "Best overall",
                   style.metric_label(metric) + " ", "Gain"], font_size=7.5)
    for r in h.to_dict("records"):
        everyone = r["group"] == "all"
        label = "all (oracle)" if everyone else group_label(str(r["group"]), n).replace("\n", " ")
        best = "per-group best" if everyone else style.label(str(r["best_method"]))
        table.add([Cell(label, bold=everyone), Cell(fmt_int(r["n_users"])), Cell(best), Cell(fmt_num(r["best_value"])),
                   Cell(style.label(str(r["overall_method"]))), Cell(fmt_num(r["overall_value"])),
                   Cell(fmt_pct(r["gain_pct"] / 100), bold=everyone)])
    table.note = ("Means over seeds of the main runs of the non-personalised methods (not PMTRec, its variants or "
                  "the controls); the overall best is the one with the highest user-weighted mean. The oracle picks the best method per group on test metrics: an upper bound on what choosing "
                  "a method per user group could gain, not a method.")
    table.data = h.reset_index(drop=True)
    return table, headroom_reading(h, dataset, metric)


def headroom_reading(h: pd.DataFrame, dataset: str, metric: str = "ndcg@20") -> str:
    all_row = h[h["group"] == "all"].iloc[0]
    groups = h[h["group"] != "all"]
    others = groups[groups["best_method"] != groups["overall_method"]]
    text = (f"On {dataset}, {style.label(str(all_row['overall_method']))} is the best non-personalised method overall "
            f"({style.metric_label(metric)} {fmt_num(all_row['overall_value'])}); an oracle choosing the best method "
            f"for each of the {len(groups)} activity groups reaches {fmt_num(all_row['best_value'])} "
            f"({fmt_pct(all_row['gain_pct'] / 100)}).")
    if others.empty:
        text += " The same method is best in every group, so choosing per group gains nothing here."
    else:
        text += (f" Another method is best in {len(others)} of the {len(groups)} groups; the gain bounds what "
                 "per-user weighting could add at this preprocessing.")
    return text
