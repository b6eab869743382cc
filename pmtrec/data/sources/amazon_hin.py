"""``amazon-hin``: the Amazon slice of the HIN-Datasets-for-Recommendation collection.

Files (integer ids, 0-based, no header):

* ``user_item.dat`` (tab): user, item, rating 1..5, Unix time -> interactions with ``rating``
  and ``timestamp`` (implicit feedback and the split are preprocessing's business);
* ``item_view.dat`` (comma): item, view node. A view node is a co-viewed product in its own id
  space; two items linked to the same view node were viewed with the same product, so every
  pair of items sharing a view node is a co-view link (a node shared by n items gives
  n(n-1)/2 links);
* ``item_category.dat`` (comma): item, category (22 categories, 1-4 per item);
* ``item_brand.dat`` (comma): item, brand (one per item).

The category task (``dataset.amazon-hin.category``, reasoning and counts in
docs/data_format.md):

* ``brand`` (default): the item's brand;
* ``category``: the item's categories as a multi-label relation, without the near-universal
  ones (those on more than ``max_category_share`` of the items: here the slice's root, on 99%
  of the items, and one child on 84%).

Either way labels held by fewer than ``min_items`` items are dropped: a class of one item is
shared with no other item, so it carries nothing for the embeddings to share.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from pmtrec.data.fetch import resolve_files
from pmtrec.data.frames import RawFrames
from pmtrec.data.sources import register
from pmtrec.data.sources.text import read_int_table
from pmtrec.errors import ConfigError

SOURCE = "amazon-hin"
FILES = ("user_item.dat", "item_view.dat", "item_category.dat", "item_brand.dat")
CATEGORY_FROM = ("brand", "category")


def coview_pairs(item_view: pd.DataFrame) -> pd.DataFrame:
    """Every pair of distinct items sharing a view node, each pair once (``item`` < ``other``)."""
    iv = item_view.drop_duplicates()
    pairs = iv.merge(iv, on="view", suffixes=("", "_other"))
    pairs = pairs[pairs["item"] < pairs["item_other"]]
    pairs = pairs[["item", "item_other"]].drop_duplicates().rename(columns={"item_other": "other"})
    return pairs.sort_values(["item", "other"], kind="stable").reset_index(drop=True)


def keep_labels(item_label: pd.DataFrame, *, min_items: int, max_share: float | None = None) -> pd.DataFrame:
    """``item, category`` rows without the labels on fewer than ``min_items`` items or on more
    than ``max_share`` of the items that have a label."""
    item_label = item_label.drop_duplicates()
    per_label = item_label.groupby("category")["item"].nunique()
    keep = per_label >= min_items
    if max_share is not None:
        keep &= per_label <= max_share * item_label["item"].nunique()
    kept = item_label[item_label["category"].isin(per_label.index[keep])]
    return kept.sort_values(["item", "category"], kind="stable").reset_index(drop=True)


def _options(scfg: dict[str, Any]) -> tuple[str, int, float]:
    mode = scfg.get("category", "brand")
    if mode not in CATEGORY_FROM:
        raise ConfigError(f"dataset.{SOURCE}.category: expected one of {', '.join(CATEGORY_FROM)}, got {mode!r}")
    min_items = scfg.get("min_items", 2)
    if isinstance(min_items, bool) or not isinstance(min_items, int) or min_items < 1:
        raise ConfigError(f"dataset.{SOURCE}.min_items: expected an integer >= 1, got {min_items!r}")
    share = scfg.get("max_category_share", 0.5)
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not math.isfinite(share) \
            or not 0 < share <= 1:
        raise ConfigError(f"dataset.{SOURCE}.max_category_share: expected a number in (0, 1], got {share!r}")
    return mode, min_items, float(share)


@register(SOURCE, raw_files=True, relations=("category", "coview"))
def load(cfg: dict[str, Any]) -> RawFrames:
    scfg = cfg.get("dataset", {}).get(SOURCE) or {}
    mode, min_items, share = _options(scfg)
    paths = resolve_files(cfg, SOURCE)
    missing = [f for f in FILES if f not in paths]
    if missing:
        raise ConfigError(f"dataset.{SOURCE}.files must list {', '.join(missing)}")
    interactions = read_int_table(paths["user_item.dat"], ("user", "item", "rating", "timestamp"), sep="\t")
    interactions["rating"] = interactions["rating"].astype("float64")
    item_view = read_int_table(paths["item_view.dat"], ("item", "view"), sep=",")
    if mode == "brand":
        labels = read_int_table(paths["item_brand.dat"], ("item", "category"), sep=",")
        item_category = keep_labels(labels, min_items=min_items)
    else:
        labels = read_int_table(paths["item_category.dat"], ("item", "category"), sep=",")
        item_category = keep_labels(labels, min_items=min_items, max_share=share)
    return RawFrames(name=SOURCE, interactions=interactions, social=None,
                     item_category=item_category if len(item_category) else None,
                     coview=coview_pairs(item_view))
