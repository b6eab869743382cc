"""The two data containers of the data layer.

``RawFrames`` is what a source parser returns: pandas frames with raw ids of any type.
``Prepared`` is what preprocessing returns and what every model / task / trainer
consumes: contiguous 0-based int64 ids in numpy arrays (see docs/data_format.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

INTERACTION_COLUMNS = ("user", "item")
INTERACTION_OPTIONAL = ("rating", "timestamp")
SOCIAL_COLUMNS = ("user", "friend")
CATEGORY_COLUMNS = ("item", "category")
COVIEW_COLUMNS = ("item", "other")


@dataclass
class RawFrames:
    """Raw relations of one dataset, straight from its source files.

    interactions: columns ``user``, ``item`` and optionally ``rating``, ``timestamp``.
    social:       columns ``user``, ``friend`` (directed or not; made undirected later).
    item_category: columns ``item``, ``category`` (one or more rows per item).
    coview:       columns ``item``, ``other`` (directed or not; made undirected later).

    files: frame name -> the file whose data rows the frame holds, in file order (so that
    preprocessing's errors name the file and its 1-based data row, not the dataset).
    category_names: raw category id -> its name, for sources whose categories are ids with a
    separate name list (Ciao, Epinions); the prepared ``category_map`` then holds the names.
    """

    name: str
    interactions: pd.DataFrame
    social: pd.DataFrame | None = None
    item_category: pd.DataFrame | None = None
    coview: pd.DataFrame | None = None
    files: dict[str, str] = field(default_factory=dict)
    category_names: dict[Any, str] | None = None


@dataclass
class Prepared:
    """A preprocessed dataset: contiguous 0-based ids, per-user split, side relations.

    ``train``/``valid``/``test`` are int64 arrays of shape (n, 2) holding [user, item],
    sorted by user then item. ``social`` and ``coview`` hold both directions of every
    undirected link (so ``len(social) // 2`` links), no self-loops, no duplicates.
    ``item_category`` is (n, 2) [item, category]. Relations that a dataset lacks are
    ``None``. ``user_raw[i]`` is the raw id (a str) of user ``i``; likewise for items
    and categories.
    """

    name: str
    n_users: int
    n_items: int
    n_categories: int
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    social: np.ndarray | None
    item_category: np.ndarray | None
    coview: np.ndarray | None
    user_raw: np.ndarray
    item_raw: np.ndarray
    category_raw: np.ndarray
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def n_interactions(self) -> int:
        return int(len(self.train) + len(self.valid) + len(self.test))

    def split(self, name: str) -> np.ndarray:
        """The (n, 2) [user, item] array of split ``train``, ``valid`` or ``test``."""
        if name not in ("train", "valid", "test"):
            raise ValueError(f"unknown split '{name}' (train | valid | test)")
        return getattr(self, name)
