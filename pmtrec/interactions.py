"""Interaction pairs as evaluation and the baselines read them: checked id pairs, their keys,
per-user rows (CSR) of excluded items, and activity groups."""

from __future__ import annotations

import numpy as np
import torch

from pmtrec.errors import DataError, PmtrecError


def _as_pairs(name: str, pairs, n_users: int | None, n_items: int | None) -> np.ndarray:
    """Return ``pairs`` as an int64 ``(t, 2)`` array of in-range ``[user, item]`` ids (None: no upper bound)."""
    arr = np.asarray(pairs)
    if arr.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise PmtrecError(f"{name} must be a (t, 2) array of [user, item] pairs, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise PmtrecError(f"{name} must hold integer ids, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    for col, what, n in ((0, "user", n_users), (1, "item", n_items)):
        lo, hi = int(arr[:, col].min()), int(arr[:, col].max())
        if lo < 0 or (n is not None and hi >= n):
            bad = lo if lo < 0 else hi
            raise DataError(f"{name} holds {what} id {bad} outside [0, {n})")
    return arr


def _pair_keys(pairs: np.ndarray, n_items: int) -> np.ndarray:
    """Sorted unique ``user * n_items + item`` keys (sorted by user, then item)."""
    return np.unique(pairs[:, 0] * np.int64(n_items) + pairs[:, 1])


class _Csr:
    """Pairs grouped by the position of their user in an evaluation order.

    ``pos[ptr[a]:ptr[b]]`` / ``item[ptr[a]:ptr[b]]`` are the pairs whose user sits at
    positions ``a .. b-1``; ``pos`` and ``item`` are tensors on the evaluation device,
    ``ptr`` a host array (so slicing a batch costs no device sync).
    """

    def __init__(self, keys: np.ndarray, order_users: np.ndarray, n_items: int, device):
        users = keys // n_items
        items = keys % n_items
        srt = np.argsort(order_users, kind="stable")
        sorted_users = order_users[srt]
        at = np.searchsorted(sorted_users, users)
        at_c = np.minimum(at, max(len(sorted_users) - 1, 0))
        keep = (at < len(sorted_users)) & (sorted_users[at_c] == users) if len(sorted_users) else np.zeros(len(users), bool)
        pos = srt[at_c[keep]]
        items = items[keep]
        by_pos = np.argsort(pos, kind="stable")
        pos, items = pos[by_pos], items[by_pos]
        self.ptr = np.searchsorted(pos, np.arange(len(order_users) + 1))
        self.counts = np.diff(self.ptr)
        self.pos = torch.as_tensor(pos, dtype=torch.long, device=device)
        self.item = torch.as_tensor(items, dtype=torch.long, device=device)

    def batch(self, b0: int, b1: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(row within the batch, item) index tensors of the pairs for positions b0..b1-1."""
        s, e = int(self.ptr[b0]), int(self.ptr[b1])
        return self.pos[s:e] - b0, self.item[s:e]


def _prepare_exclude(exclude, n_users: int | None, n_items: int) -> np.ndarray:
    if exclude is None:
        return np.zeros(0, dtype=np.int64)
    if isinstance(exclude, np.ndarray) or torch.is_tensor(exclude):
        parts = [exclude]
    else:
        parts = list(exclude)
    arrays = [_as_pairs(f"exclude[{i}]", np.asarray(p), n_users, n_items) for i, p in enumerate(parts)]
    if not arrays:
        return np.zeros(0, dtype=np.int64)
    return _pair_keys(np.concatenate(arrays), n_items)


def activity_groups(train: np.ndarray, n: int, n_groups: int = 5, column: int = 0) -> np.ndarray:
    """Activity group id per entity (``0`` = least active .. ``n_groups-1`` = most active).

    Counts each entity's training pairs (``column`` 0 = users, 1 = items). Entities with
    at least one pair are ordered by count, ties by lower id, and cut into ``n_groups``
    equal-sized groups (sizes differ by at most one; rank-based, like
    ``pd.qcut(counts.rank(method="first"), n_groups)``). Entities with no pair go to group 0.
    """
    n, n_groups = int(n), int(n_groups)
    if n < 1:
        raise PmtrecError(f"n must be positive, got {n}")
    if n_groups < 1:
        raise PmtrecError(f"n_groups must be a positive integer, got {n_groups}")
    if column not in (0, 1):
        raise PmtrecError(f"column must be 0 (users) or 1 (items), got {column!r}")
    pairs = _as_pairs("train", train, *((n, None) if column == 0 else (None, n)))
    counts = np.bincount(pairs[:, column], minlength=n)
    groups = np.zeros(n, dtype=np.int64)
    active = np.flatnonzero(counts > 0)
    order = active[np.argsort(counts[active], kind="stable")]
    groups[order] = (np.arange(len(order)) * n_groups) // max(len(order), 1)
    return groups
