"""Summary statistics of a prepared dataset (plain Python numbers)."""

from __future__ import annotations

from typing import Any

import numpy as np

from pmtrec.data.frames import Prepared

COLD_MAX_TRAIN = 5  # a user with <= this many training items counts as cold

STATS_KEYS = (
    "dataset", "users", "items", "interactions", "density", "train", "valid", "test",
    "social_links", "categories", "category_items", "category_labels", "coview_links", "avg_user_degree",
    "avg_item_degree", "cold_users_frac",
)


def dataset_stats(p: Prepared) -> dict[str, Any]:
    n = p.n_interactions
    train_deg = np.bincount(p.train[:, 0], minlength=p.n_users) if p.n_users else np.zeros(0)
    return {
        "dataset": str(p.name),
        "users": int(p.n_users),
        "items": int(p.n_items),
        "interactions": int(n),
        "density": float(n / (p.n_users * p.n_items)) if p.n_users and p.n_items else 0.0,
        "train": int(len(p.train)),
        "valid": int(len(p.valid)),
        "test": int(len(p.test)),
        "social_links": int(len(p.social) // 2) if p.social is not None else 0,
        "categories": int(p.n_categories),
        # items with a category, and (item, category) rows: more rows than items = multi-label
        "category_items": int(len(np.unique(p.item_category[:, 0]))) if p.item_category is not None else 0,
        "category_labels": int(len(p.item_category)) if p.item_category is not None else 0,
        "coview_links": int(len(p.coview) // 2) if p.coview is not None else 0,
        "avg_user_degree": float(n / p.n_users) if p.n_users else 0.0,
        "avg_item_degree": float(n / p.n_items) if p.n_items else 0.0,
        "cold_users_frac": float(np.mean(train_deg <= COLD_MAX_TRAIN)) if p.n_users else 0.0,
    }


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value == 0 or abs(value) >= 0.01:
            return f"{value:.4g}" if abs(value) < 1e6 else f"{value:,.0f}"
        return f"{value:.3e}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def format_stats(stats: dict[str, Any]) -> str:
    """A two-column text table of ``stats``."""
    rows = [(str(k), _fmt(v)) for k, v in stats.items() if not isinstance(v, (dict, list))]
    width = max(len(k) for k, _ in rows) if rows else 0
    vwidth = max(len(v) for _, v in rows) if rows else 0
    line = "-" * (width + vwidth + 3)
    body = "\n".join(f"{k:<{width}}   {v:>{vwidth}}" for k, v in rows)
    return f"{line}\n{body}\n{line}"
