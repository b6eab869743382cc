"""What the embeddings learn: the probe table with intervals, probes per activity group, item maps."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pmtrec.report import style
from pmtrec.report.tables import ZERO_STD, Cell, Table, fmt_num

REF = style.REFERENCE
# (probe, metric) -> column label, in table order
COLUMNS = {("category", "accuracy"): "Category acc.", ("category", "macro_f1"): "Category macro-F1",
           ("link", "roc_auc"): "Social-link AUC", ("activity", "accuracy"): "Activity acc.",
           ("activity", "macro_f1"): "Activity macro-F1"}
MAP_KINDS = {"pca": "PCA", "tsne": "t-SNE"}
CONTRASTS = ("ew", "single")  # the methods the reading compares the reference with


def seed_means(probes: pd.DataFrame, dataset: str, group: str = "all") -> pd.DataFrame:
    """Mean over folds per run: method, probe, metric, baseline, group, seed, value, fold_std."""
    p = probes[(probes["dataset"] == dataset) & (probes["group"].astype(str) == group)]
    return (p.groupby(["method", "probe", "metric", "baseline", "group", "seed"], as_index=False)
            .agg(value=("value", "mean"), fold_std=("value", "std")))


def summarise(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds with a 95% t-interval (half-width ``ci``; NaN for one seed) and the folds' spread."""
    from scipy import stats

    def one(g: pd.DataFrame) -> pd.Series:
        n = len(g)
        sd = float(g["value"].std(ddof=1)) if n > 1 else float("nan")
        ci = float(stats.t.ppf(0.975, n - 1) * sd / np.sqrt(n)) if n > 1 else float("nan")
        return pd.Series({"mean": float(g["value"].mean()), "ci": ci, "n": n, "fold_std": float(g["fold_std"].mean())})

    keys = ["method", "probe", "metric", "baseline", "group"]
    rows = [{**dict(zip(keys, k)), **one(g).to_dict()} for k, g in per_seed.groupby(keys)]
    return pd.DataFrame(rows, columns=keys + ["mean", "ci", "n", "fold_std"])


def _fmt(mean: float, ci: float) -> str:
    # no interval when undefined (one seed) or exactly 0 (the same value on every seed)
    return fmt_num(mean, 3) + ("" if np.isnan(ci) or abs(ci) <= ZERO_STD else f" ± {ci:.3f}")


def probe_table(summary: pd.DataFrame, dataset: str) -> Table:
    """One row per method (and the permuted baseline): mean ± 95% interval of each probe metric."""
    emb = summary[summary["baseline"] == "embeddings"]
    cols = [c for c in COLUMNS if ((emb["probe"] == c[0]) & (emb["metric"] == c[1])).any()]
    table = Table(["Method"] + [COLUMNS[c] for c in cols], font_size=8.5)
    for m in style.order_methods(emb["method"].unique()):
        cells = [Cell(style.label(m))]
        for probe, metric in cols:
            r = emb[(emb["method"] == m) & (emb["probe"] == probe) & (emb["metric"] == metric)]
            cells.append(Cell(_fmt(r["mean"].iloc[0], r["ci"].iloc[0]) if len(r) else "–"))
        table.add(cells, highlight=m == REF)
    perm = summary[summary["baseline"] == "permuted"]
    chance = [Cell("chance (permuted rows)", italic=True)]
    for probe, metric in cols:
        r = perm[(perm["probe"] == probe) & (perm["metric"] == metric)]
        chance.append(Cell(fmt_num(r["mean"].mean(), 3) if len(r) else "–", italic=True))
    table.add(chance, rule=True)
    n = int(emb["n"].max()) if len(emb) else 0
    table.note = (f"Logistic-regression probes on held-out stratified folds (5), mean over {n} seed"
                  f"{'s' if n != 1 else ''}" + (" ± 95% t-interval over seeds" if n > 1 else "")
                  + ". Category: an item's category from its embedding; social link: a link from the product "
                  "of two users' embeddings against as many sampled non-links; activity: a user's activity group "
                  "(5 quantile groups). Chance: the same probe on the embeddings with their rows permuted, "
                  "averaged over methods. The folds hold out items and users, not the labels the category and "
                  "social tasks trained on, so a method that trained on a relation keeps it by construction: a "
                  "probe shows how much of it the embeddings keep, and Single-task's row how much the main "
                  "task alone encodes.")
    d = summary[summary.set_index(["probe", "metric"]).index.isin(cols)]
    table.data = (d.assign(ci_low=d["mean"] - d["ci"], ci_high=d["mean"] + d["ci"])
                  [["method", "baseline", "probe", "metric", "mean", "ci_low", "ci_high", "n", "fold_std"]]
                  .rename(columns={"n": "n_seeds"}).reset_index(drop=True))
    return table


def _value(summary: pd.DataFrame, method: str, probe: str, metric: str, baseline: str = "embeddings"):
    r = summary[(summary["method"] == method) & (summary["probe"] == probe) & (summary["metric"] == metric)
                & (summary["baseline"] == baseline)]
    return (float(r["mean"].iloc[0]), float(r["ci"].iloc[0])) if len(r) else None


def _compare(a: tuple[float, float], b: tuple[float, float]) -> str:
    """'higher' / 'lower' when the two intervals do not overlap, else 'within the intervals of'."""
    (ma, ca), (mb, cb) = a, b
    if np.isnan(ca) or np.isnan(cb):
        return "higher than" if ma > mb else "lower than" if ma < mb else "equal to"
    if ma - ca > mb + cb:
        return "higher than"
    if ma + ca < mb - cb:
        return "lower than"
    return "within the intervals of"


def probe_reading(summary: pd.DataFrame, dataset: str) -> str:
    emb = summary[summary["baseline"] == "embeddings"]
    parts = []
    for (probe, metric), label in COLUMNS.items():
        if metric == "macro_f1":
            continue
        have = emb[(emb["probe"] == probe) & (emb["metric"] == metric)]
        if have.empty:
            continue
        best = have.loc[have["mean"].idxmax()]
        chance = summary[(summary["baseline"] == "permuted") & (summary["probe"] == probe)
                         & (summary["metric"] == metric)]["mean"].mean()
        text = (f"{label}: {style.label(best['method'])} is highest ({fmt_num(best['mean'], 3)}, chance "
                f"{fmt_num(chance, 3)})")
        ref = _value(summary, REF, probe, metric)
        if ref is not None:
            cmp = [f"{_compare(ref, v)} {style.label(m)}'s {fmt_num(v[0], 3)}"
                   for m in CONTRASTS if m != REF and (v := _value(summary, m, probe, metric)) is not None]
            if cmp:
                text += f"; {style.label(REF)}'s {fmt_num(ref[0], 3)} is " + " and ".join(cmp)
        parts.append(text)
    if not parts:
        return f"On {dataset}, no probe could run (no categories, social links or activity groups)."
    n = int(emb["n"].max())
    note = " (means over seeds; 'within the intervals' when the 95% intervals overlap)" if n > 1 else \
        " (one seed: no interval, so no difference is established)"
    return f"On {dataset}: " + ". ".join(parts) + "." + note


def group_rows(probes: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Per activity group, mean over folds and seeds: the link AUC and the activity probe's recall."""
    p = probes[(probes["dataset"] == dataset) & (probes["group"].astype(str) != "all")]
    p = p[((p["probe"] == "link") & (p["metric"] == "roc_auc")) | ((p["probe"] == "activity") & (p["metric"] == "recall"))]
    return (p.groupby(["probe", "metric", "baseline", "method", "group"], as_index=False)["value"].mean()
            .assign(group=lambda d: d["group"].astype(int)))


def group_plot(rows: pd.DataFrame):
    import matplotlib.pyplot as plt

    probes = [p for p in ("link", "activity") if (rows["probe"] == p).any()]
    titles = {"link": "social-link AUC (links of the colder user)", "activity": "activity-group recall"}
    fig, axes = plt.subplots(1, len(probes), figsize=(style.FULL_WIDTH if len(probes) > 1 else style.HALF_WIDTH * 1.3,
                                                      2.9), squeeze=False)
    for ax, probe in zip(axes[0], probes):
        r = rows[rows["probe"] == probe]
        for m in style.order_methods(r["method"].unique()):
            d = r[(r["method"] == m) & (r["baseline"] == "embeddings")].sort_values("group")
            em = style.emphasis(m)
            ax.plot(d["group"], d["value"], color=style.color(m), marker=style.marker(m), label=style.label(m),
                    linewidth=em["linewidth"], markersize=em["markersize"] * 0.8, zorder=em["zorder"])
        chance = r[r["baseline"] == "permuted"].groupby("group")["value"].mean()
        ax.plot(chance.index, chance.to_numpy(), color="#888888", linestyle="--", linewidth=1, label="chance")
        groups = sorted(r["group"].unique())
        ax.set_xticks(groups)
        ax.set_xticklabels([("cold " if g == groups[0] else "active " if g == groups[-1] else "") + str(g)
                            for g in groups])
        ax.set_xlabel("user activity group")
        ax.set_title(titles[probe], fontsize=style.FONT_SIZE)
        ax.ticklabel_format(axis="y", useOffset=False, style="plain")
    handles, labels = axes[0][-1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(7, len(labels)), fontsize=style.FONT_SIZE - 2,
               frameon=False)
    fig.tight_layout(rect=(0, 0.1 + 0.07 * (len(labels) > 7), 1, 1))
    return fig


def group_reading(rows: pd.DataFrame, dataset: str) -> str:
    r = rows[(rows["probe"] == "link") & (rows["baseline"] == "embeddings")]
    if r.empty:
        return (f"{dataset} has no social links, so only the activity probe is shown per group: how well a user's "
                "activity group can be read from their embedding.")
    lo, hi = r["group"].min(), r["group"].max()
    parts = []
    for m in style.order_methods(r["method"].unique()):
        d = r[r["method"] == m].set_index("group")["value"]
        parts.append(f"{style.label(m)} {fmt_num(d.get(lo), 3)} → {fmt_num(d.get(hi), 3)}")
    return (f"On {dataset}, the social-link AUC from the coldest to the most active group ({lo} → {hi}): "
            + "; ".join(parts) + ". A cold user's embedding carries their social links when the AUC stays "
            "high in group 0.")


def map_plot(maps: pd.DataFrame, dataset: str, kind: str):
    import matplotlib.pyplot as plt

    d = maps[(maps["dataset"] == dataset) & (maps["kind"] == kind)]
    methods = style.order_methods(d["method"].unique())
    cats = [c for c in d["category"].value_counts().index if c != "other"] + (
        ["other"] if (d["category"] == "other").any() else [])
    colors = dict(zip(cats, list(plt.get_cmap("tab10").colors)[:len(cats)]))
    if "other" in colors:
        colors["other"] = (0.8, 0.8, 0.8)
    cols = min(3, len(methods))
    rows = -(-len(methods) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(style.FULL_WIDTH, 2.2 * rows + 0.5), squeeze=False)
    for ax in axes.flat[len(methods):]:
        ax.set_visible(False)
    for ax, m in zip(axes.flat, methods):
        dm = d[d["method"] == m]
        for c in reversed(cats):  # "other" first, underneath
            dc = dm[dm["category"] == c]
            ax.scatter(dc["x"], dc["y"], s=3, color=colors[c], label=c, linewidths=0, rasterized=True)
        ax.set_title(style.label(m), fontsize=style.FONT_SIZE, color=style.color(m) if m == REF else "black")
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [plt.Line2D([], [], marker="o", linestyle="", color=colors[c], label=c) for c in cats]
    fig.legend(handles=handles, loc="lower center", ncol=min(5, len(cats)), fontsize=style.FONT_SIZE - 2,
               frameon=False)
    fig.tight_layout(rect=(0, 0.06 + 0.04 * (len(cats) > 5), 1, 1))
    return fig


def map_caption(maps: pd.DataFrame, dataset: str, kind: str) -> str:
    d = maps[(maps["dataset"] == dataset) & (maps["kind"] == kind)]
    n = d.groupby("method")["item"].nunique().max()
    return (f"{MAP_KINDS.get(kind, kind)} map of {n} item embeddings on {dataset} (the same items in every panel; "
            "first seed), coloured by category (the 8 most frequent; the rest grey).")


def neighbour_agreement(maps: pd.DataFrame, dataset: str, kind: str, k: int = 10) -> pd.Series:
    """Per method: the share of each item's ``k`` nearest neighbours on the map with its category
    (items labelled ``other`` excluded as anchors)."""
    from sklearn.neighbors import NearestNeighbors

    d = maps[(maps["dataset"] == dataset) & (maps["kind"] == kind)]
    out = {}
    for m, dm in d.groupby("method"):
        xy, cat = dm[["x", "y"]].to_numpy(), dm["category"].to_numpy()
        idx = NearestNeighbors(n_neighbors=min(k + 1, len(dm))).fit(xy).kneighbors(xy, return_distance=False)[:, 1:]
        same = cat[idx] == cat[:, None]
        out[m] = float(same[cat != "other"].mean())
    return pd.Series(out)


def map_reading(maps: pd.DataFrame, dataset: str, kind: str) -> str:
    agree = neighbour_agreement(maps, dataset, kind)
    d = maps[(maps["dataset"] == dataset) & (maps["kind"] == kind)]
    labelled = d[d["category"] != "other"].groupby("method")["category"]
    # what agreement a map with no category structure gives: the chance that two labelled items share one
    shares = labelled.value_counts(normalize=True).groupby(level=0).apply(lambda s: float((s ** 2).sum()))
    parts = [f"{style.label(m)} {agree[m]:.2f}" for m in style.order_methods(agree.index)]
    return (f"Share of an item's 10 nearest neighbours on the {MAP_KINDS.get(kind, kind)} map that share its category "
            f"(among the 8 most frequent; {float(shares.mean()):.2f} when the map ignores categories): "
            + ", ".join(parts) + ".")
