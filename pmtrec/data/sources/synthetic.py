"""A seeded synthetic social-recommendation dataset with planted structure.

Generative story (all vectorised numpy; ``rng = default_rng(seed)``):

* ``K`` communities with centroids ``C_k ~ N(0, I_d)``; each user and item belongs to
  one community (Dirichlet-sized) and has a latent factor = centroid + noise.
* Item popularity is log-normal (a few blockbusters, a long tail).
* User activity is heavy-tailed: ``n_u = 4 + floor(LogNormal)`` scaled to the target
  mean, so many users have only a handful of interactions (cold users).
* Each interaction picks a community (the user's own with prob. ``p_own``, else a
  random one), draws ``M`` candidate items from it by popularity, and keeps the
  candidate with the best ``<u, v> / sqrt(d)`` + Gumbel noise. Collaborative
  filtering can therefore recover more than popularity.
* Ratings 1..5 grow with the affinity (so ``implicit_threshold`` can be exercised);
  timestamps are per-user increasing sequences inside a 3-year window.
* Social links by homophily: with prob. ``p_social_same`` a friend is drawn from the
  user's community (best factor similarity of ``M`` candidates), else uniformly.
* Item categories: ``2 * (community mod C) + side(v)`` where ``side`` is the sign of the
  item factor's projection on a random direction (5% random noise). ``C`` is the size's
  base community count, so growing ``scale`` adds communities but not categories: a
  larger catalogue keeps its taxonomy (Ciao and Epinions both have ~27 categories), and
  the category head's cost per sample stays fixed.
* Co-views: items link to same-community items with similar factors, by popularity.

Sizes (``dataset.synthetic.size``): ``tiny`` ~300 users x 400 items (tests),
``small`` ~3000 x 3000 / ~60k interactions (demo), ``large`` ~100k x 100k / ~2M
(scaling). ``dataset.synthetic.scale`` multiplies users, items and interactions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pmtrec.data.frames import RawFrames
from pmtrec.data.sources import register
from pmtrec.errors import ConfigError

T0 = 1_262_304_000  # 2010-01-01 UTC
SPAN = 3 * 365 * 86_400
MIN_ACTIVITY = 4  # fewest interactions a synthetic user draws (some fall under a 5-core)


@dataclass(frozen=True)
class SynthSpec:
    users: int
    items: int
    avg_interactions: float
    communities: int
    category_groups: int = 0  # categories = 2 x this; 0: one group per community
    dim: int = 16
    candidates: int = 8
    p_own: float = 0.6
    activity_sigma: float = 1.3
    popularity_sigma: float = 1.1
    factor_noise: float = 0.8
    affinity_weight: float = 2.0
    avg_friends: float = 6.0
    p_social_same: float = 0.85
    avg_coviews: float = 4.0


SIZES: dict[str, SynthSpec] = {
    "tiny": SynthSpec(users=300, items=400, avg_interactions=20.0, communities=6),
    "small": SynthSpec(users=3000, items=3000, avg_interactions=20.0, communities=20),
    "large": SynthSpec(users=100_000, items=100_000, avg_interactions=20.0, communities=200),
}


def _spec(size: str, scale: float) -> SynthSpec:
    if size not in SIZES:
        raise ConfigError(f"dataset.synthetic.size: unknown size '{size}' (tiny | small | large)")
    try:
        scale = float(scale)
    except (TypeError, ValueError):
        raise ConfigError(f"dataset.synthetic.scale: expected a positive number, got {scale!r}") from None
    if not scale > 0 or not np.isfinite(scale):
        raise ConfigError(f"dataset.synthetic.scale: expected a positive number, got {scale!r}")
    base = SIZES[size]
    users = max(20, int(round(base.users * scale)))
    items = max(20, int(round(base.items * scale)))
    k = int(round(base.communities * np.sqrt(scale)))
    k = max(2, min(k, users // 10, items // 10))
    return SynthSpec(**{**base.__dict__, "users": users, "items": items, "communities": k,
                        "category_groups": min(k, base.communities)})


def _sample_in_groups(rng: np.random.Generator, order: np.ndarray, weights: np.ndarray,
                      starts: np.ndarray, ends: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """For each entry of ``groups``, draw a member of that group with prob. ∝ its weight.

    ``order`` lists members sorted by group; group g is ``order[starts[g]:ends[g]]``
    (non-empty). One vectorised inverse-CDF draw per group (a loop over groups only).
    """
    n_groups = len(starts)
    small = groups.astype(np.int16 if n_groups < 2**15 else np.int32)
    perm = np.argsort(small, kind="stable")  # radix sort for small ints
    counts = np.bincount(groups, minlength=n_groups)
    out = np.empty(len(groups), dtype=np.int64)
    pos = 0
    for g in np.flatnonzero(counts):
        c = int(counts[g])
        members = order[starts[g]:ends[g]]
        cum = np.cumsum(weights[members])
        hit = np.searchsorted(cum, rng.random(c) * cum[-1], side="right")
        out[perm[pos:pos + c]] = members[np.minimum(hit, len(members) - 1)]
        pos += c
    return out


def _best_of(rng: np.random.Generator, query: np.ndarray, cand: np.ndarray, factors: np.ndarray,
             weight: float, chunk: int = 131_072) -> np.ndarray:
    """Pick per row the candidate maximising weight * <q, f_c> / sqrt(d) + Gumbel."""
    n, m = cand.shape
    out = np.empty(n, dtype=np.int64)
    scale = weight / np.sqrt(factors.shape[1])
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        f = factors[cand[a:b]]  # (c, m, d)
        s = np.einsum("cd,cmd->cm", query[a:b], f) * scale
        s -= np.log(-np.log(rng.random(s.shape, dtype=np.float32) + np.float32(1e-12)))
        out[a:b] = cand[a:b][np.arange(b - a), s.argmax(axis=1)]
    return out


def generate(size: str = "tiny", seed: int = 0, scale: float = 1.0) -> tuple[RawFrames, dict[str, Any]]:
    """Generate the dataset; returns the raw frames and the planted truth.

    Truth: ``user_community``, ``item_community`` (int arrays indexed by raw id - 1),
    ``user_factors``, ``item_factors``, ``item_popularity``, ``spec``.
    """
    spec = _spec(size, scale)
    rng = np.random.default_rng(seed)
    nu, ni, k, d = spec.users, spec.items, spec.communities, spec.dim

    # communities and latent factors
    centroids = rng.normal(size=(k, d)).astype(np.float32)
    share = rng.dirichlet(np.full(k, 5.0))
    zu = rng.choice(k, size=nu, p=share)
    zi = rng.choice(k, size=ni, p=share)
    zu[:k] = np.arange(k)  # every community is non-empty
    zi[:k] = np.arange(k)
    uf = centroids[zu] + spec.factor_noise * rng.normal(size=(nu, d)).astype(np.float32)
    vf = centroids[zi] + spec.factor_noise * rng.normal(size=(ni, d)).astype(np.float32)
    pop = np.exp(spec.popularity_sigma * rng.normal(size=ni))

    item_order = np.argsort(zi, kind="stable")
    item_starts = np.searchsorted(zi[item_order], np.arange(k), side="left")
    item_ends = np.searchsorted(zi[item_order], np.arange(k), side="right")
    user_order = np.argsort(zu, kind="stable")
    user_starts = np.searchsorted(zu[user_order], np.arange(k), side="left")
    user_ends = np.searchsorted(zu[user_order], np.arange(k), side="right")
    ones = np.ones(nu)

    # heavy-tailed activity
    sig = spec.activity_sigma
    mu = np.log(max(spec.avg_interactions - MIN_ACTIVITY, 1.0)) - sig * sig / 2
    n_u = MIN_ACTIVITY + np.floor(rng.lognormal(mu, sig, size=nu)).astype(np.int64)
    n_u = np.minimum(n_u, max(MIN_ACTIVITY, ni // 4))
    users = np.repeat(np.arange(nu), n_u)

    m = spec.candidates

    def draw(who: np.ndarray) -> np.ndarray:
        own = rng.random(len(who)) < spec.p_own
        comm = np.where(own, zu[who], rng.choice(k, size=len(who), p=share))
        cand = _sample_in_groups(rng, item_order, pop, item_starts, item_ends, np.repeat(comm, m))
        return _best_of(rng, uf[who], cand.reshape(len(who), m), vf, spec.affinity_weight)

    # draw, drop repeated (user, item) pairs, and top up the users left short (3 rounds)
    items = draw(users)
    for top_up in range(4):
        _, first = np.unique(users * ni + items, return_index=True)
        first.sort()
        users, items = users[first], items[first]
        deficit = n_u - np.bincount(users, minlength=nu)
        if top_up == 3 or deficit.sum() <= 0.002 * len(users):
            break
        extra = np.repeat(np.arange(nu), np.maximum(deficit, 0))
        users = np.concatenate([users, extra])
        items = np.concatenate([items, draw(extra)])
    n = len(users)

    # ratings from affinity
    aff = np.einsum("nd,nd->n", uf[users], vf[items]) / np.sqrt(d)
    z = (aff - aff.mean()) / (aff.std() + 1e-9)
    rating = np.clip(np.rint(3.4 + 1.0 * z + 0.8 * rng.normal(size=n)), 1, 5)

    # timestamps: per-user increasing sequence
    counts = np.bincount(users, minlength=nu)
    start = T0 + (rng.random(nu) * 0.6 * SPAN).astype(np.int64)
    mean_gap = (0.4 * SPAN) / np.maximum(counts, 1)
    gaps = rng.exponential(size=n) * mean_gap[users]
    order = np.argsort(users, kind="stable")
    users, items, rating = users[order], items[order], rating[order]
    gaps = gaps[order]
    cum = np.cumsum(gaps)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    base = np.concatenate([[0.0], cum])[offsets]
    ts = start[users] + (cum - base[users]).astype(np.int64)
    shuffle = rng.permutation(n)  # rows in no particular order, like real dumps
    interactions = pd.DataFrame({
        "user": users[shuffle] + 1,
        "item": items[shuffle] + 1,
        "rating": rating[shuffle],
        "timestamp": ts[shuffle],
    })

    # social links by homophily (directed: truster -> trustee)
    fs = 1.0
    f_mu = np.log(spec.avg_friends) - fs * fs / 2
    n_f = np.floor(rng.lognormal(f_mu, fs, size=nu)).astype(np.int64)
    n_f = np.minimum(n_f, nu - 1)
    src = np.repeat(np.arange(nu), n_f)
    same = rng.random(len(src)) < spec.p_social_same
    cand = _sample_in_groups(rng, user_order, ones, user_starts, user_ends, np.repeat(zu[src], m)).reshape(-1, m)
    best = _best_of(rng, uf[src], cand, uf, spec.affinity_weight)
    dst = np.where(same, best, rng.integers(0, nu, size=len(src)))
    keep = src != dst
    social = pd.DataFrame({"user": src[keep] + 1, "friend": dst[keep] + 1}).drop_duplicates(ignore_index=True)

    # categories from communities and factors
    direction = rng.normal(size=d).astype(np.float32)
    side = ((vf - centroids[zi]) @ direction > 0).astype(np.int64)
    groups = spec.category_groups or k
    cat = 2 * (zi % groups) + side
    noisy = rng.random(ni) < 0.05
    cat = np.where(noisy, rng.integers(0, 2 * groups, size=ni), cat)
    item_category = pd.DataFrame({"item": np.arange(ni) + 1, "category": cat + 1})

    # co-views: similar same-community items, popularity-weighted
    n_c = rng.poisson(spec.avg_coviews, size=ni)
    a = np.repeat(np.arange(ni), n_c)
    cand = _sample_in_groups(rng, item_order, pop, item_starts, item_ends, np.repeat(zi[a], m)).reshape(-1, m)
    b = _best_of(rng, vf[a], cand, vf, spec.affinity_weight)
    keep = a != b
    coview = pd.DataFrame({"item": a[keep] + 1, "other": b[keep] + 1}).drop_duplicates(ignore_index=True)

    name = f"synthetic-{size}" + ("" if float(scale) == 1.0 else f"-x{float(scale):g}")
    raw = RawFrames(name=name, interactions=interactions, social=social,
                    item_category=item_category, coview=coview)
    truth = {"user_community": zu, "item_community": zi, "user_factors": uf, "item_factors": vf,
             "item_popularity": pop, "spec": spec}
    return raw, truth


@register("synthetic", relations=("social", "category", "coview"))
def load(cfg: dict[str, Any]) -> RawFrames:
    scfg = cfg.get("dataset", {}).get("synthetic") or {}
    size = scfg.get("size", "tiny")
    seed = scfg.get("seed", 0)
    scale = scfg.get("scale", 1.0)
    if scale is None:
        scale = 1.0
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"dataset.synthetic.seed: expected an integer, got {seed!r}")
    return generate(str(size), seed, scale)[0]
