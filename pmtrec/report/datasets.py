"""Datasets: the statistics table and the user/item degree distributions (log-log)."""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from pmtrec.report import style
from pmtrec.report.data import ReportError, degrees
from pmtrec.report.tables import Cell, Table, fmt_int

COLUMNS = [("users", "Users"), ("items", "Items"), ("interactions", "Interactions"), ("density", "Density"),
           ("social_links", "Social links"), ("categories", "Categories"), ("category_items", "Items with a category"),
           ("coview_links", "Co-view links"), ("cold_users_frac", "Cold users")]
PERCENT = {"density": 3, "cold_users_frac": 1}  # shown as percentages, with these decimals
DATASET_COLORS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")


def stats_table(stats: pd.DataFrame, datasets: list[str]) -> tuple[Table, str]:
    s = stats.set_index("dataset").reindex(datasets)
    cols = [(k, v) for k, v in COLUMNS if k in s.columns]
    table = Table(["Dataset"] + [v for _, v in cols], font_size=8.5)
    for d, r in s.iterrows():
        cells = [Cell(str(d))]
        for k, _ in cols:
            cells.append(Cell(f"{r[k] * 100:.{PERCENT[k]}f}%" if k in PERCENT else fmt_int(r[k])))
        table.add(cells)
    table.note = ("After preprocessing (k-core filtering, implicit feedback). Density = interactions / (users × "
                  "items); social and co-view links are undirected; categories = distinct item categories (an item may "
                  "have several); cold users have at most 5 training interactions.")
    table.data = s[[k for k, _ in cols]].rename_axis("dataset").reset_index()
    return table, stats_reading(s, [k for k, _ in cols])


def stats_reading(s: pd.DataFrame, cols: list[str]) -> str:
    parts = []
    for d, r in s.iterrows():
        text = (f"{d} has {fmt_int(r['users'])} users, {fmt_int(r['items'])} items and "
                f"{fmt_int(r['interactions'])} interactions (density {r['density'] * 100:.3f}%, "
                f"{r['interactions'] / r['users']:.1f} interactions per user)")
        aux = [f"{fmt_int(r[k])} {lab}" for k, lab in (("social_links", "social links"),
                                                       ("categories", "categories"),
                                                       ("coview_links", "co-view links"))
               if k in cols and not pd.isna(r[k]) and r[k] > 0]  # a relation the dataset lacks is not named
        if aux:
            text += "; its auxiliary tasks draw on " + ", ".join(aux)
        parts.append(text)
    sparsest = s["density"].idxmin()
    out = ". ".join(parts) + "."
    if len(s) > 1:
        out += f" The sparsest dataset is {sparsest}."
    return out


def degree_data(prepared: Mapping[str, str], datasets: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for d in datasets:
        if d not in prepared:
            raise ReportError(f"prepared_dirs: no prepared folder given for dataset '{d}' "
                              f"(given: {', '.join(prepared) or 'none'})")
        out[d] = degrees(prepared[d])
    return out


def degree_plot(deg: dict[str, tuple[np.ndarray, np.ndarray]]):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(style.FULL_WIDTH, 2.8))
    for ax, which, title in ((axes[0], 0, "users"), (axes[1], 1, "items")):
        for i, (d, arrays) in enumerate(deg.items()):
            k = arrays[which]
            k = k[k > 0]
            values, counts = np.unique(k, return_counts=True)
            ax.scatter(values, counts, s=9, alpha=0.75, color=DATASET_COLORS[i % len(DATASET_COLORS)],
                       marker="os^Dv<>p"[i % 8], label=d, linewidths=0)
        style.log_axes(ax)
        ax.set_xlabel(f"degree (interactions per {title[:-1]})")
        ax.set_ylabel(f"number of {title}")
        ax.set_title(f"{title.capitalize()}")
        ax.legend(loc="upper right", markerscale=1.8)
    fig.tight_layout()
    return fig


def degree_reading(deg: dict[str, tuple[np.ndarray, np.ndarray]]) -> str:
    parts = []
    for d, (u, it) in deg.items():
        u, it = u[u > 0], it[it > 0]
        top = np.sort(it)[::-1]
        share = top[: max(1, int(np.ceil(0.1 * len(top))))].sum() / top.sum()
        parts.append(f"on {d}, the median user has {np.median(u):.0f} interactions (max {u.max():,}) and the "
                     f"10% most popular items hold {share * 100:.0f}% of all interactions")
    return ("Both distributions are heavy-tailed: " + "; ".join(parts)
            + ". This long tail is what the user-activity and item-popularity groups of the personalization "
              "section split.")
