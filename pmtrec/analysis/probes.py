"""Linear probes: how much of each side relation a run's embeddings carry (scikit-learn).

Three probes, each a standardised logistic regression scored on held-out stratified folds:

* ``category``: an item's category from its embedding (items with exactly one category);
  accuracy and macro-F1;
* ``link``: whether two users are socially linked, from the element-wise product of their
  embeddings; ROC AUC on held-out links against as many sampled non-links;
* ``activity``: a user's activity group (the evaluation's quantile groups of training
  interactions) from their embedding; accuracy and macro-F1.

Every probe runs twice on the same folds: on the embeddings, and on the embeddings with their
rows permuted (the ``permuted`` baseline: the same features and class balance, no relation
between an entity and its row, so the probe scores chance). Results are tidy rows (probe,
metric, group, fold, baseline, value); ``group`` is ``all`` or a user-activity group: the link
AUC of the links whose less active user is in that group, and the activity probe's recall
within each group.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pmtrec.errors import PmtrecError

BASELINES = ("embeddings", "permuted")


def _classifier(seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))


def _folds(y: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import StratifiedKFold

    return list(StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))


def _out_of_fold(X: np.ndarray, y: np.ndarray, splits, seed: int, proba: bool) -> list[np.ndarray]:
    """Per fold, the held-out predictions (class labels, or P(y=1) when ``proba``)."""
    out = []
    for train, test in splits:
        clf = _classifier(seed).fit(X[train], y[train])
        out.append(clf.predict_proba(X[test])[:, 1] if proba else clf.predict(X[test]))
    return out


def _rows(probe: str, baseline: str, metric: str, group, fold: int, value: float) -> dict:
    return {"probe": probe, "baseline": baseline, "metric": metric, "group": str(group), "fold": fold,
            "value": float(value)}


def _check(emb: np.ndarray, what: str) -> np.ndarray:
    emb = np.asarray(emb, dtype=np.float64)
    if emb.ndim != 2 or not np.isfinite(emb).all():
        raise PmtrecError(f"{what}: expected a finite [n, d] matrix, got shape {emb.shape}")
    return emb


def category_probe(item_emb: np.ndarray, item_category: np.ndarray | None, *, folds: int = 5, seed: int = 0,
                   max_items: int = 5000) -> list[dict]:
    """Item category from item embeddings (items with one category; of the ``max_items`` drawn, the
    classes with at least ``folds`` items)."""
    from sklearn.metrics import accuracy_score, f1_score

    if item_category is None or len(item_category) == 0:
        return []
    emb = _check(item_emb, "item embeddings")
    items, counts = np.unique(item_category[:, 0], return_counts=True)
    single = item_category[np.isin(item_category[:, 0], items[counts == 1])]
    rng = np.random.default_rng(seed)
    if len(single) > max_items:
        single = single[np.sort(rng.choice(len(single), max_items, replace=False))]
    classes, sizes = np.unique(single[:, 1], return_counts=True)  # every class in every fold
    single = single[np.isin(single[:, 1], classes[sizes >= folds])]
    if len(np.unique(single[:, 1])) < 2:
        return []
    y = single[:, 1]
    splits = _folds(y, folds, seed)
    rows = []
    for baseline in BASELINES:
        X = emb[single[:, 0]] if baseline == "embeddings" else emb[rng.permutation(len(emb))[single[:, 0]]]
        for k, ((_, test), pred) in enumerate(zip(splits, _out_of_fold(X, y, splits, seed, proba=False))):
            rows.append(_rows("category", baseline, "accuracy", "all", k, accuracy_score(y[test], pred)))
            rows.append(_rows("category", baseline, "macro_f1", "all", k,
                              f1_score(y[test], pred, average="macro", zero_division=0)))
    return rows


def sample_non_links(links: np.ndarray, n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` distinct unordered pairs (a < b) of ``0..n-1`` that are not in ``links``."""
    if n * (n - 1) // 2 - len(links) < size:
        raise PmtrecError(f"cannot sample {size} non-links among {n} users with {len(links)} links")
    taken = set((links[:, 0] * n + links[:, 1]).tolist())
    out = np.empty(0, dtype=np.int64)
    while len(out) < size:  # rounds of vectorised draws (a handful: links are sparse)
        a, b = rng.integers(0, n, size=(2, 2 * (size - len(out)) + 16))
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        key = np.unique(lo[lo != hi] * n + hi[lo != hi])
        key = key[~np.isin(key, np.fromiter(taken, dtype=np.int64, count=len(taken)))]
        key = rng.permutation(key)[:size - len(out)]
        taken.update(key.tolist())
        out = np.concatenate([out, key])
    return np.stack([out // n, out % n], axis=1)


def link_probe(user_emb: np.ndarray, social: np.ndarray | None, user_groups: np.ndarray | None = None, *,
               folds: int = 5, seed: int = 0, max_links: int = 5000) -> list[dict]:
    """Social links from the product of the two users' embeddings; ROC AUC (overall and per group)."""
    from sklearn.metrics import roc_auc_score

    if social is None or len(social) == 0:
        return []
    emb = _check(user_emb, "user embeddings")
    n = len(emb)
    links = social[social[:, 0] < social[:, 1]]
    rng = np.random.default_rng(seed)
    if len(links) > max_links:
        links = links[np.sort(rng.choice(len(links), max_links, replace=False))]
    non = sample_non_links(social[social[:, 0] < social[:, 1]], n, len(links), rng)
    pairs = np.concatenate([links, non])
    y = np.r_[np.ones(len(links), dtype=np.int64), np.zeros(len(non), dtype=np.int64)]
    colder = None
    if user_groups is not None:
        colder = np.minimum(user_groups[pairs[:, 0]], user_groups[pairs[:, 1]])
    splits = _folds(y, folds, seed)
    rows = []
    for baseline in BASELINES:
        e = emb if baseline == "embeddings" else emb[rng.permutation(n)]
        X = e[pairs[:, 0]] * e[pairs[:, 1]]
        for k, ((_, test), p) in enumerate(zip(splits, _out_of_fold(X, y, splits, seed, proba=True))):
            rows.append(_rows("link", baseline, "roc_auc", "all", k, roc_auc_score(y[test], p)))
            if colder is None:
                continue
            for g in np.unique(colder[test]):
                mask = colder[test] == g
                if len(np.unique(y[test][mask])) == 2:
                    rows.append(_rows("link", baseline, "roc_auc", int(g), k, roc_auc_score(y[test][mask], p[mask])))
    return rows


def activity_probe(user_emb: np.ndarray, user_groups: np.ndarray, *, folds: int = 5, seed: int = 0,
                   max_users: int = 5000) -> list[dict]:
    """User activity group from user embeddings; accuracy, macro-F1 and recall within each group."""
    from sklearn.metrics import accuracy_score, f1_score

    emb = _check(user_emb, "user embeddings")
    users = np.arange(len(emb))
    rng = np.random.default_rng(seed)
    if len(users) > max_users:
        users = np.sort(rng.choice(len(users), max_users, replace=False))
    y = np.asarray(user_groups)[users]
    if len(np.unique(y)) < 2 or np.unique(y, return_counts=True)[1].min() < folds:
        return []
    splits = _folds(y, folds, seed)
    rows = []
    for baseline in BASELINES:
        X = emb[users] if baseline == "embeddings" else emb[rng.permutation(len(emb))[users]]
        for k, ((_, test), pred) in enumerate(zip(splits, _out_of_fold(X, y, splits, seed, proba=False))):
            rows.append(_rows("activity", baseline, "accuracy", "all", k, accuracy_score(y[test], pred)))
            rows.append(_rows("activity", baseline, "macro_f1", "all", k,
                              f1_score(y[test], pred, average="macro", zero_division=0)))
            for g in np.unique(y[test]):
                mask = y[test] == g
                rows.append(_rows("activity", baseline, "recall", int(g), k, float(np.mean(pred[mask] == g))))
    return rows


def probe_all(user_emb: np.ndarray, item_emb: np.ndarray, data, *, n_groups: int = 5, folds: int = 5,
              seed: int = 0) -> pd.DataFrame:
    """Every probe the dataset supports, as one tidy frame."""
    from pmtrec.evaluate import activity_groups

    if user_emb.shape[0] != data.n_users or item_emb.shape[0] != data.n_items:
        raise PmtrecError(f"embeddings have {user_emb.shape[0]} users and {item_emb.shape[0]} items; dataset "
                          f"'{data.name}' has {data.n_users} and {data.n_items}: they belong to another dataset")
    groups = activity_groups(data.train, data.n_users, n_groups, column=0)
    rows = (category_probe(item_emb, data.item_category, folds=folds, seed=seed)
            + link_probe(user_emb, data.social, groups, folds=folds, seed=seed)
            + activity_probe(user_emb, groups, folds=folds, seed=seed))
    return pd.DataFrame(rows, columns=["probe", "baseline", "metric", "group", "fold", "value"])
