"""Amazon product data (McAuley et al.), 2014 or 2018 release.

Reviews: JSON lines (``.json`` or ``.json.gz``) with keys ``reviewerID``, ``asin``,
``overall`` (rating) and ``unixReviewTime`` (timestamp).

Metadata: one product per line, either the 2014 format (a Python dict literal,
parsed with :func:`ast.literal_eval`; keys ``asin``, ``related.also_viewed``,
``categories`` = list of category paths) or the 2018 format (JSON; keys ``asin``,
``also_view``, ``also_buy``, ``category`` = one category path). The lists named by
``dataset.amazon.coview`` (default ``[also_view]``; ``also_buy`` may be added) become the
co-view relation (2014's ``related.also_viewed`` / ``also_bought`` are read for them); the
item's category is the most specific (last) entry of its first category path, with HTML
entities decoded (2018 writes ``Arts, Music &amp; Photography``).

Config: ``dataset.amazon.reviews`` / ``dataset.amazon.meta`` are paths or URLs.
When null, the 5-core reviews ``reviews_<category>_5.json.gz`` (2014 name) or
``<category>_5.json.gz`` (2018 name) and ``meta_<category>.json.gz`` are looked up in
``<mirror>/amazon/`` then ``<cache>/amazon/``. The metadata is optional only when
``meta`` is explicitly ``false``.
"""

from __future__ import annotations

import ast
import bz2
import gzip
import html
import io
import json
import lzma
from pathlib import Path
from typing import IO, Any, Iterator

import pandas as pd

from pmtrec.data.fetch import cache_dir, from_manifest, mirror_dir, resolve_path_or_url
from pmtrec.data.frames import RawFrames
from pmtrec.data.sources import register
from pmtrec.errors import ConfigError, DataError

REVIEW_KEYS = ("reviewerID", "asin", "overall", "unixReviewTime")
# co-view list name -> its key in the 2018 records and in the 2014 records' ``related``
COVIEW_LISTS = {"also_view": ("also_view", "also_viewed"), "also_buy": ("also_buy", "also_bought")}


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


def read_meta(path: Path, coview: tuple[str, ...] = ("also_view",)) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    cat_items, cats, co_a, co_b = [], [], [], []
    keys = [COVIEW_LISTS[name] for name in coview]
    for lineno, line in _lines(path):
        rec = _parse_record(path, lineno, line)
        asin = rec.get("asin")
        if asin is None:
            raise DataError(f"{path}: line {lineno} lacks key 'asin'")
        asin = str(asin)
        related = rec.get("related") if isinstance(rec.get("related"), dict) else {}
        for key_2018, key_2014 in keys:
            also = related.get(key_2014) or rec.get(key_2018) or []
            if not isinstance(also, list):
                raise DataError(f"{path}: line {lineno}: {key_2018} must be a list of asins")
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
        leaf = html.unescape(str(leaf)).strip() if leaf is not None else ""
        if leaf:
            cat_items.append(asin)
            cats.append(leaf)
    item_category = pd.DataFrame({"item": cat_items, "category": cats}, dtype=str) if cat_items else None
    coview = pd.DataFrame({"item": co_a, "other": co_b}, dtype=str) if co_a else None
    return item_category, coview


def review_names(category: str) -> tuple[str, ...]:
    """File names of a category's 5-core reviews: the 2014 release's, then the 2018 release's."""
    return (f"reviews_{category}_5.json.gz", f"{category}_5.json.gz")


def default_path(cfg: dict[str, Any], names: tuple[str, ...], key: str) -> Path:
    """The first of ``names`` (or its uncompressed twin) in ``<mirror>/amazon/``, then ``<cache>/amazon/``."""
    known = from_manifest(cfg, "amazon", key)
    if known is not None:
        return known
    mirror = mirror_dir(cfg)
    bases = ([mirror] if mirror is not None else []) + [cache_dir(cfg)]
    for base in bases:
        for name in names:
            for candidate in (name, name.removesuffix(".gz")):
                if (base / "amazon" / candidate).is_file():
                    return base / "amazon" / candidate
    hint = " (or set it to false to go without metadata)" if key == "meta" else ""
    where = " or ".join(str(b / "amazon") for b in bases)
    raise DataError(f"dataset.amazon.{key} is not set and {' / '.join(names)} is not in {where}{hint}")


def source_paths(cfg: dict[str, Any]) -> dict[str, Path]:
    """The review file and (unless ``meta: false``) the metadata file of the configured slice."""
    acfg = cfg.get("dataset", {}).get("amazon") or {}
    category = acfg.get("category") or "Video_Games"
    paths = {}
    for key, names in (("reviews", review_names(category)), ("meta", (f"meta_{category}.json.gz",))):
        value = acfg.get(key)
        if value is False and key == "meta":
            continue
        paths[key] = (resolve_path_or_url(cfg, "amazon", str(value), key) if value
                      else default_path(cfg, names, key))
    return paths


def _coview_lists(acfg: dict[str, Any]) -> tuple[str, ...]:
    value = acfg.get("coview", ["also_view"])
    value = [value] if isinstance(value, str) else value
    if not isinstance(value, list) or any(v not in COVIEW_LISTS for v in value):
        raise ConfigError(f"dataset.amazon.coview: expected a list of {', '.join(COVIEW_LISTS)}, got {value!r}")
    return tuple(value)


@register("amazon", raw_files=True, path_keys=("reviews", "meta"), relations=("category", "coview"))
def load(cfg: dict[str, Any]) -> RawFrames:
    acfg = cfg.get("dataset", {}).get("amazon") or {}
    category = acfg.get("category") or "Video_Games"
    coview_lists = _coview_lists(acfg)
    paths = source_paths(cfg)
    interactions = read_reviews(paths["reviews"])
    item_category = coview = None
    if "meta" in paths:
        item_category, coview = read_meta(paths["meta"], coview_lists)
    return RawFrames(name=f"amazon-{category}", interactions=interactions, social=None,
                     item_category=item_category, coview=coview)
