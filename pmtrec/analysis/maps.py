"""2-D maps of item embeddings (PCA and t-SNE, scikit-learn), coloured by category.

The same items are drawn for every method of a dataset (a seeded sample of the items with
exactly one category), so the panels are comparable; t-SNE runs with a fixed seed and PCA
initialisation, so a map is a function of the embeddings and the seed. Categories beyond the
``top`` most frequent among the drawn items are shown as ``other``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pmtrec.errors import PmtrecError

KINDS = ("pca", "tsne")


def map_items(item_category: np.ndarray | None, n_items: int, *, size: int = 2000, seed: int = 0) -> np.ndarray:
    """The items of the maps: a seeded sample of the items with exactly one category (sorted)."""
    if item_category is None or len(item_category) == 0:
        raise PmtrecError("item map: the dataset has no item categories to colour the map by")
    items, counts = np.unique(item_category[:, 0], return_counts=True)
    items = items[counts == 1]
    items = items[items < n_items]
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(items, min(size, len(items)), replace=False))


def item_map(item_emb: np.ndarray, items: np.ndarray, *, seed: int = 0, kinds: tuple[str, ...] = KINDS
             ) -> pd.DataFrame:
    """Columns kind, item, x, y: the 2-D coordinates of ``items`` by each projection in ``kinds``."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    X = np.asarray(item_emb, dtype=np.float64)[items]
    if len(X) < 5:
        raise PmtrecError(f"item map: {len(X)} items are too few to map")
    out = []
    for kind in kinds:
        if kind == "pca":
            xy = PCA(n_components=2, random_state=seed).fit_transform(X)
        elif kind == "tsne":
            # one OpenMP thread: t-SNE's spin-waiting threads slow it 10-30x on a loaded machine
            # (measured: 43 s against 1.2 s for 150 items while another job used both cores)
            with threadpool_limits(limits=1, user_api="openmp"):
                xy = TSNE(n_components=2, perplexity=min(30.0, (len(X) - 1) / 3), init="pca", random_state=seed,
                          max_iter=1000).fit_transform(X)
        else:
            raise PmtrecError(f"item map: unknown projection '{kind}' (known: {', '.join(KINDS)})")
        out.append(pd.DataFrame({"kind": kind, "item": items, "x": xy[:, 0], "y": xy[:, 1]}))
    return pd.concat(out, ignore_index=True)


def category_labels(item_category: np.ndarray, category_raw: np.ndarray, items: np.ndarray, top: int = 8
                    ) -> pd.Series:
    """item -> category name, the ``top`` most frequent among ``items`` and ``other`` for the rest."""
    cat = pd.Series(item_category[:, 1], index=item_category[:, 0]).loc[items]
    names = pd.Series(np.asarray(category_raw, dtype=object)[cat.to_numpy()], index=items).astype(str)
    keep = names.value_counts().index[:top]
    return names.where(names.isin(keep), "other")
