"""Full-ranking top-K evaluation: Recall, Precision, Hit, NDCG, MRR and MAP at several K.

Protocol
--------
For every user with at least one target pair, all ``n_items`` items are scored by the
model; the user's *excluded* pairs (the training pairs when validating, training plus
validation pairs when testing) are set to ``-inf`` and so never ranked, and the top
``max(ks)`` items are compared with the user's *targets* (the held-out pairs).
Users without a target are not evaluated. Every metric is averaged over the evaluated
users with equal weight (a per-user mean, not a per-pair mean).

Ties between equal scores are broken by the **lower item id** first, so results are
deterministic and do not depend on ``batch_size`` (given a ``score_fn`` whose scores for
a user do not depend on which other users share the batch). Items scored ``-inf`` by
the model are treated like excluded items. NaN scores raise :class:`PmtrecError`.

Metrics, for a user ``u`` with target set ``T_u`` and top-K list ``R_u`` (ranks
``r = 1..K``; a target that is also excluded is never ranked, but still counts in
``|T_u|``, as in RecBole):

* ``recall@K    = |R_u ∩ T_u| / |T_u|``
* ``precision@K = |R_u ∩ T_u| / K``  (K, even if fewer than K items can be ranked)
* ``hit@K       = 1 if |R_u ∩ T_u| > 0 else 0``
* ``ndcg@K      = DCG / IDCG`` with ``DCG = sum over hit ranks r of 1 / log2(r + 1)`` and
  ``IDCG = sum_{r=1}^{min(|T_u|, K)} 1 / log2(r + 1)`` (the RecBole / LightGCN convention).
* ``mrr@K       = 1 / r*`` with ``r*`` the rank of the first target in ``R_u``, 0 if none
  (RecBole's ``MRR``).
* ``map@K       = (1 / min(|T_u|, K)) * sum_{r=1}^{K} rel_r * precision@r`` with ``rel_r = 1``
  if the item at rank ``r`` is a target. The normaliser ``min(|T_u|, K)`` is RecBole's
  (``MAP`` in ``recbole/evaluator/metrics.py``), so ``map@K = 1`` when the first
  ``min(|T_u|, K)`` ranks are all targets; TREC / ``ranx`` divide by ``|T_u|`` instead,
  which gives ``map@K * min(|T_u|, K) / |T_u|``.

Recall divides by ``|T_u|`` (not ``min(|T_u|, K)``), as RecBole and ``ranx`` do, so a
user with more than K targets cannot reach ``recall@K = 1``.

Duplicate pairs in ``targets`` or ``exclude`` are counted once.

Activity groups
---------------
:func:`activity_groups` gives every user (or item) a group id ``0 .. n_groups-1``
(0 = least active) from its number of training pairs. When ``user_groups`` is passed to
:func:`evaluate_ranking`, :attr:`EvalResult.groups` is keyed by the group id as a
string, ``"0"`` (least active) .. ``str(n_groups - 1)`` (most active), covering every id
from 0 to ``user_groups.max()``. Each value holds the metrics averaged over the
evaluated users of that group plus ``"n_users"``; a group with no evaluated user has
``n_users = 0`` and NaN metrics (``None`` in :meth:`EvalResult.to_dict`).

Implementation
--------------
Per batch of evaluated users: one ``score_fn`` call, exclusions written as ``-inf`` via
precomputed CSR-style index tensors, one ``torch.topk``, and hits read from a reusable
``batch x n_items`` boolean target matrix filled (and cleared) by ``index_put_``. In rows
where a score tie straddles the K-th position the top-K set is rebuilt so the lower
item id wins. Per-user metrics stay on ``device`` until one copy to the CPU at the
end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from pmtrec.errors import DataError, PmtrecError
from pmtrec.interactions import _as_pairs, _Csr, _pair_keys, _prepare_exclude, activity_groups  # noqa: F401

__all__ = [
    "METRICS",
    "EvalResult",
    "activity_groups",
    "evaluate_ranking",
    "mf_score_fn",
    "top_k_items",
]

#: Metric names, in the order their keys appear in :attr:`EvalResult.metrics`.
#: New families go at the end so existing result files keep their key order.
METRICS: tuple[str, ...] = ("recall", "ndcg", "precision", "hit", "mrr", "map")

ScoreFn = Callable[[torch.Tensor], torch.Tensor]


# --------------------------------------------------------------------------- inputs


def _check_ks(ks) -> tuple[int, ...]:
    if isinstance(ks, (int, np.integer)):
        ks = (ks,)
    try:
        out = sorted({int(k) for k in ks})
    except (TypeError, ValueError):
        raise PmtrecError(f"ks must be positive integers, got {ks!r}") from None
    if not out or out[0] < 1 or any(int(k) != k for k in ks):
        raise PmtrecError(f"ks must be non-empty positive integers, got {ks!r}")
    return tuple(out)


# --------------------------------------------------------------------------- ranking


def _rank_batch(scores: torch.Tensor, kk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``kk`` (values, item ids) per row, ties broken by lower item id.

    ``torch.topk`` orders tied values arbitrarily, and may pick any of several tied
    items at the K-th position. Asking for one extra item shows which rows have a tie
    across the cut; only in those rows is the top-K set rebuilt (every item above the
    cut value, then the lowest-id items equal to it). The order inside the kept top-K
    is then made canonical with two small stable sorts on ``batch x K`` tensors.
    """
    n_items = scores.shape[1]
    if kk < n_items:
        vals, idx = torch.topk(scores, kk + 1, dim=1, largest=True, sorted=True)
        cut = vals[:, kk - 1]
        tied = (cut == vals[:, kk]) & (cut > -math.inf)
        vals, idx = vals[:, :kk], idx[:, :kk]
        if bool(tied.any()):  # one host sync per batch
            # keep every item above the cut value, then the lowest-id items equal to it
            rows = tied.nonzero().squeeze(1)
            sub = scores.index_select(0, rows)
            t = cut.index_select(0, rows).unsqueeze(1)
            above = sub > t
            need = kk - above.sum(1, keepdim=True, dtype=torch.int32)
            at = sub == t
            keep = above | (at & (at.cumsum(1, dtype=torch.int32) <= need))
            kept = keep.nonzero()[:, 1].view(len(rows), kk)  # row-major: ascending ids per row
            vals[rows] = sub.gather(1, kept)
            idx[rows] = kept
    else:
        vals, idx = torch.sort(scores, dim=1, descending=True, stable=True)
        return vals, idx
    idx, perm = torch.sort(idx, dim=1)
    vals = vals.gather(1, perm)
    vals, perm = torch.sort(vals, dim=1, descending=True, stable=True)
    return vals, idx.gather(1, perm)


def _ranked_batches(
    score_fn: ScoreFn,
    users: np.ndarray,
    n_items: int,
    exclude: _Csr,
    kk: int,
    batch_size: int,
    device: torch.device,
) -> Iterator[tuple[int, int, torch.Tensor, torch.Tensor]]:
    """Yield ``(b0, b1, values, item ids)`` of the masked top-``kk`` for users[b0:b1]."""
    users_t = torch.as_tensor(users, dtype=torch.long, device=device)
    neg_inf = torch.tensor(-math.inf, device=device)
    nan_seen = torch.zeros((), dtype=torch.bool, device=device)
    for b0 in range(0, len(users), batch_size):
        b1 = min(b0 + batch_size, len(users))
        batch = users_t[b0:b1]
        scores = score_fn(batch)
        if not isinstance(scores, torch.Tensor):
            raise PmtrecError(f"score_fn must return a torch.Tensor, got {type(scores).__name__}")
        if tuple(scores.shape) != (b1 - b0, n_items):
            raise PmtrecError(
                f"score_fn returned shape {tuple(scores.shape)} for {b1 - b0} users; expected ({b1 - b0}, {n_items})"
            )
        scores = scores.to(device)
        if not scores.is_floating_point():
            scores = scores.float()
        elif not scores.is_contiguous() or scores._base is not None:
            # a view (e.g. an expanded popularity row): never write into the caller's tensor
            scores = scores.clone()
        rows, items = exclude.batch(b0, b1)
        scores.index_put_((rows, items), neg_inf.to(scores.dtype))
        vals, idx = _rank_batch(scores, kk)
        nan_seen |= torch.isnan(vals).any()
        yield b0, b1, vals, idx
    if bool(nan_seen):
        raise PmtrecError("score_fn returned NaN scores")


def _check_common(n_users: int, n_items: int, batch_size: int) -> None:
    if int(n_users) < 1 or int(n_items) < 1:
        raise PmtrecError(f"n_users and n_items must be positive, got {n_users} and {n_items}")
    if int(batch_size) < 1:
        raise PmtrecError(f"batch_size must be a positive integer, got {batch_size}")


# --------------------------------------------------------------------------- results


@dataclass
class EvalResult:
    """Metrics of one evaluation (see the module docstring for definitions)."""

    #: ``"<metric>@K"`` for every metric in :data:`METRICS` and every K -> mean over evaluated users.
    metrics: dict[str, float]
    #: Same keys -> float64 array, one value per entry of :attr:`users`.
    per_user: dict[str, np.ndarray]
    #: Evaluated user ids (users with at least one target), ascending.
    users: np.ndarray
    #: Group id as a string (``"0"`` = least active) -> metrics over that group's users, plus ``"n_users"``.
    groups: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready ``{"overall": metrics, "groups": {label: metrics + n_users}}`` (NaN -> None)."""

        def clean(d: dict) -> dict:
            out = {}
            for key, value in d.items():
                if key == "n_users":
                    out[key] = int(value)
                else:
                    value = float(value)
                    out[key] = None if math.isnan(value) else value
            return out

        return {
            "overall": clean(self.metrics),
            "groups": {label: clean(m) for label, m in self.groups.items()},
        }


# --------------------------------------------------------------------------- API


def evaluate_ranking(
    score_fn: ScoreFn,
    n_users: int,
    n_items: int,
    targets: np.ndarray,
    exclude: list[np.ndarray] | np.ndarray | None,
    ks: Sequence[int] = (10, 20, 50),
    batch_size: int = 1024,
    device: str | torch.device = "cpu",
    user_groups: np.ndarray | None = None,
) -> EvalResult:
    """Full-ranking evaluation of ``score_fn`` over all items for every user with a target.

    ``score_fn(users)`` gets a LongTensor of user ids on ``device`` and returns their
    scores over all items, shape ``(len(users), n_items)``; it should return a new
    tensor (views are copied, anything else is overwritten with ``-inf`` at excluded
    pairs). ``targets`` are ``(t, 2)`` ``[user, item]`` pairs to find; ``exclude`` one
    pair array or a list of them, masked out of the ranking. ``user_groups`` (length
    ``n_users``, ids ``>= 0``, e.g. from :func:`activity_groups`) adds per-group metrics.
    """
    _check_common(n_users, n_items, batch_size)
    n_users, n_items, batch_size = int(n_users), int(n_items), int(batch_size)
    ks = _check_ks(ks)
    device = torch.device(device)
    target_pairs = _as_pairs("targets", targets, n_users, n_items)
    if len(target_pairs) == 0:
        raise PmtrecError("targets is empty: no user to evaluate")
    tkeys = _pair_keys(target_pairs, n_items)
    users = np.unique(tkeys // n_items)
    if user_groups is not None:
        user_groups = np.asarray(user_groups)
        if user_groups.shape != (n_users,) or not np.issubdtype(user_groups.dtype, np.integer):
            raise PmtrecError(
                f"user_groups must be an integer array of shape ({n_users},), got {user_groups.dtype} {user_groups.shape}"
            )
        if user_groups.min() < 0:
            raise PmtrecError(f"user_groups holds negative group id {int(user_groups.min())}")

    tgt = _Csr(tkeys, users, n_items, device)
    excl = _Csr(_prepare_exclude(exclude, n_users, n_items), users, n_items, device)
    n_eval = len(users)
    kk = min(ks[-1], n_items)
    fdt = torch.float32 if device.type == "mps" else torch.float64

    # discount 1/log2(r+1) for r = 1..kk, and IDCG for 0..kk relevant items
    disc = 1.0 / torch.log2(torch.arange(2, kk + 2, device=device, dtype=fdt))
    idcg = torch.cat([torch.zeros(1, device=device, dtype=fdt), disc.cumsum(0)])
    inv_rank = 1.0 / torch.arange(1, kk + 1, device=device, dtype=fdt)
    n_tgt = torch.as_tensor(tgt.counts, device=device, dtype=torch.long)
    cols = {k: min(k, kk) - 1 for k in ks}
    per_user_t = {f"{m}@{k}": torch.empty(n_eval, device=device, dtype=fdt) for m in METRICS for k in ks}

    target_buf = torch.zeros((min(batch_size, n_eval), n_items), dtype=torch.bool, device=device)
    true_, false_ = torch.tensor(True, device=device), torch.tensor(False, device=device)
    with torch.no_grad():
        for b0, b1, vals, idx in _ranked_batches(score_fn, users, n_items, excl, kk, batch_size, device):
            rows, items = tgt.batch(b0, b1)
            target_buf.index_put_((rows, items), true_)
            hits = target_buf[: b1 - b0].gather(1, idx) & (vals > -math.inf)
            target_buf.index_put_((rows, items), false_)

            hits_f = hits.to(fdt)
            cum_hits = hits_f.cumsum(1)
            cum_dcg = (hits_f * disc).cumsum(1)
            # the first hit is the hit where the running hit count is 1; its 1/rank, carried on
            cum_rr = (hits_f * (cum_hits == 1) * inv_rank).cumsum(1)
            cum_ap = (cum_hits * inv_rank * hits_f).cumsum(1)  # sum of precision@r over hit ranks
            nt = n_tgt[b0:b1]
            for k in ks:
                h = cum_hits[:, cols[k]]
                per_user_t[f"recall@{k}"][b0:b1] = h / nt
                per_user_t[f"precision@{k}"][b0:b1] = h / k
                per_user_t[f"hit@{k}"][b0:b1] = (h > 0).to(fdt)
                per_user_t[f"ndcg@{k}"][b0:b1] = cum_dcg[:, cols[k]] / idcg[nt.clamp(max=cols[k] + 1)]
                per_user_t[f"mrr@{k}"][b0:b1] = cum_rr[:, cols[k]]
                per_user_t[f"map@{k}"][b0:b1] = cum_ap[:, cols[k]] / nt.clamp(max=k)

    per_user = {key: t.cpu().numpy().astype(np.float64, copy=False) for key, t in per_user_t.items()}
    metrics = {key: float(v.mean()) for key, v in per_user.items()}

    groups: dict[str, dict[str, float]] = {}
    if user_groups is not None:
        g_of = user_groups[users]
        for g in range(int(user_groups.max()) + 1):
            mask = g_of == g
            n = int(mask.sum())
            entry = {key: (float(v[mask].mean()) if n else math.nan) for key, v in per_user.items()}
            entry["n_users"] = n
            groups[str(g)] = entry
    return EvalResult(metrics=metrics, per_user=per_user, users=users, groups=groups)


def top_k_items(
    score_fn: ScoreFn,
    users: np.ndarray,
    n_items: int,
    k: int,
    exclude: list[np.ndarray] | np.ndarray | None = None,
    batch_size: int = 1024,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Top-``k`` item ids per user, ``(len(users), k)``, best first, ties by lower item id.

    Uses the same ranking as :func:`evaluate_ranking`. Slots that only excluded (or
    ``-inf``-scored) items could fill, and slots beyond ``n_items``, hold ``-1``.
    """
    users = np.asarray(users)
    if users.ndim != 1 or (users.size and not np.issubdtype(users.dtype, np.integer)):
        raise PmtrecError(f"users must be a 1-d integer array, got {users.dtype} {users.shape}")
    users = users.astype(np.int64, copy=False)
    if len(np.unique(users)) != len(users):
        raise PmtrecError("users must not repeat")
    _check_common(1, n_items, batch_size)
    if users.size and users.min() < 0:
        raise DataError(f"users holds negative id {int(users.min())}")
    k = _check_ks((k,))[0]
    n_items, batch_size, device = int(n_items), int(batch_size), torch.device(device)
    out = np.full((len(users), k), -1, dtype=np.int64)
    if not users.size:
        return out
    excl = _Csr(_prepare_exclude(exclude, None, n_items), users, n_items, device)
    kk = min(k, n_items)
    with torch.no_grad():
        for b0, b1, vals, idx in _ranked_batches(score_fn, users, n_items, excl, kk, batch_size, device):
            idx = torch.where(vals > -math.inf, idx, torch.full_like(idx, -1))
            out[b0:b1, :kk] = idx.cpu().numpy()
    return out


def mf_score_fn(user_emb: torch.Tensor, item_emb: torch.Tensor) -> ScoreFn:
    """``users -> user_emb[users] @ item_emb.T`` (inner-product scores over all items)."""
    if user_emb.ndim != 2 or item_emb.ndim != 2 or user_emb.shape[1] != item_emb.shape[1]:
        raise PmtrecError(
            f"user_emb and item_emb must be 2-d with the same width, got {tuple(user_emb.shape)} and {tuple(item_emb.shape)}"
        )
    item_t = item_emb.T

    def score(users: torch.Tensor) -> torch.Tensor:
        return user_emb[users] @ item_t

    return score
