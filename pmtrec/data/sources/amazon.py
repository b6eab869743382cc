"""Amazon product data (McAuley et al.), 2014 or 2018 release.

Reviews: JSON lines (``.json`` or ``.json.gz``) with keys ``reviewerID``, ``asin``,
``overall`` (rating) and ``unixReviewTime`` (timestamp).

Metadata: one product per line, either the 2014 format (a Python dict literal,
parsed with :func:`ast.literal_eval`; keys ``asin``, ``related.also_viewed``,
``categories`` = list of category paths) or the 2018 format (JSON; keys ``asin``,
``also_view``, ``category`` = one category path). ``also_viewed``/``also_view``
becomes the co-view relation; the item's category is the most specific (last)
entry of its first category path.

Config: ``dataset.amazon.reviews`` / ``dataset.amazon.meta`` are paths or URLs.
When null, ``reviews_<category>_5.json.gz`` / ``meta_<category>.json.gz`` are
looked up in ``<mirror>/amazon/`` then ``<cache>/amazon/``. The metadata is
optional only when ``meta`` is explicitly ``false``.
"""

from __future__ import annotations

import ast
import bz2
import gzip
import io
import json
import lzma
from pathlib import Path
from typing import IO, Any, Iterator

import pandas as pd

from pmtrec.data.fetch import cache_dir, mirror_dir, resolve_path_or_url
from pmtrec.data.frames import RawFrames
from pmtrec.data.sources import register
from pmtrec.errors import DataError

REVIEW_KEYS = ("reviewerID", "asin", "overall", "unixReviewTime")


def _open_text(path: Path) -> IO[str]:
    name = path.name.lower()
    if name.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    if name.endswith(".bz2"):
        return bz2.open(path, "rt", encoding="utf-8")
    if name.endswith(".xz"):
        return lzma.open(path, "rt", encoding="utf-8")
    return io.open(path, "r", encoding="utf-8")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    try:
        with _open_text(path) as fh:
            for lineno, line in enumerate(fh, 1):
                line = line.strip()
                if line:
                    yield lineno, line
    except (OSError, EOFError, UnicodeDecodeError, lzma.LZMAError) as exc:
        raise DataError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from None


def _parse_record(path: Path, lineno: int, line: str) -> dict[str, Any]:
    try:
        rec = json.loads(line)
    except json.JSONDecodeError:
        try:
            rec = ast.literal_eval(line)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            raise DataError(f"{path}: line {lineno} is neither JSON nor a Python literal") from None
    if not isinstance(rec, dict):
        raise DataError(f"{path}: line {lineno} is not a mapping")
    return rec


def read_reviews(path: Path) -> pd.DataFrame:
    users, items, ratings, times = [], [], [], []
    for lineno, line in _lines(path):
        rec = _parse_record(path, lineno, line)
        try:
            users.append(rec["reviewerID"])
            items.append(rec["asin"])
            ratings.append(rec.get("overall"))
            times.append(rec.get("unixReviewTime"))
        except KeyError as exc:
            raise DataError(f"{path}: line {lineno} lacks key {exc.args[0]!r} (need reviewerID, asin)") from None
    if not users:
        raise DataError(f"{path}: no reviews")
    df = pd.DataFrame({"user": pd.array(users, dtype=object), "item": pd.array(items, dtype=object)})
    df["user"] = df["user"].astype(str)
    df["item"] = df["item"].astype(str)
    df["rating"] = pd.to_numeric(pd.Series(ratings, dtype=object), errors="coerce").astype("float64")
    if any(t is not None for t in times):
        ts = pd.to_numeric(pd.Series(times, dtype=object), errors="coerce")
        if ts.isna().any():
            row = int(ts.isna().to_numpy().nonzero()[0][0])
            raise DataError(f"{path}: review {row + 1} has a missing or non-numeric unixReviewTime")
        df["timestamp"] = ts.astype("int64")
    return df


def read_meta(path: Path) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    cat_items, cats, co_a, co_b = [], [], [], []
    for lineno, line in _lines(path):
        rec = _parse_record(path, lineno, line)
        asin = rec.get("asin")
        if asin is None:
            raise DataError(f"{path}: line {lineno} lacks key 'asin'")
        asin = str(asin)
        related = rec.get("related") if isinstance(rec.get("related"), dict) else {}
        also = related.get("also_viewed") or rec.get("also_view") or []
        for other in also:
            co_a.append(asin)
            co_b.append(str(other))
        leaf = None
        if isinstance(rec.get("categories"), list) and rec["categories"]:  # 2014: list of paths
            first = rec["categories"][0]
            if isinstance(first, (list, tuple)) and first:
                leaf = first[-1]
            elif isinstance(first, str):
                leaf = first
        elif isinstance(rec.get("category"), list) and rec["category"]:  # 2018: one path
            leaf = rec["category"][-1]
        if leaf is not None and str(leaf).strip():
            cat_items.append(asin)
            cats.append(str(leaf).strip())
    item_category = pd.DataFrame({"item": cat_items, "category": cats}, dtype=str) if cat_items else None
    coview = pd.DataFrame({"item": co_a, "other": co_b}, dtype=str) if co_a else None
    return item_category, coview


def _default(cfg: dict[str, Any], name: str, key: str) -> Path:
    mirror = mirror_dir(cfg)
    for base in ([mirror] if mirror is not None else []) + [cache_dir(cfg)]:
        for candidate in (name, name.removesuffix(".gz")):
            if (base / "amazon" / candidate).is_file():
                return base / "amazon" / candidate
    hint = " (or set it to false to go without metadata)" if key == "meta" else ""
    raise DataError(f"dataset.amazon.{key} is not set and {name} is not in the mirror or cache{hint}")


@register("amazon")
def load(cfg: dict[str, Any]) -> RawFrames:
    acfg = cfg.get("dataset", {}).get("amazon") or {}
    category = acfg.get("category") or "Video_Games"
    reviews = acfg.get("reviews")
    meta = acfg.get("meta")
    rpath = (resolve_path_or_url(cfg, "amazon", str(reviews), "reviews") if reviews
             else _default(cfg, f"reviews_{category}_5.json.gz", "reviews"))
    interactions = read_reviews(rpath)
    item_category = coview = None
    if meta is not False:
        mpath = (resolve_path_or_url(cfg, "amazon", str(meta), "meta") if meta
                 else _default(cfg, f"meta_{category}.json.gz", "meta"))
        item_category, coview = read_meta(mpath)
    return RawFrames(name=f"amazon-{category}", interactions=interactions, social=None,
                     item_category=item_category, coview=coview)
