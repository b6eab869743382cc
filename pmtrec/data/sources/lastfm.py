"""``lastfm``: the HetRec 2011 Last.fm release (hetrec2011-lastfm-2k, GroupLens).

Files (tab-separated, one header row; ``tags.dat`` is latin-1):

* ``user_artists.dat``: userID, artistID, weight -> interactions; the play count is kept as
  ``rating``, so ``preprocess.implicit_threshold: N`` keeps artists played >= N times (the
  default keeps every listened artist: each user's list is already their top 50);
* ``user_friends.dat``: userID, friendID (both directions listed) -> social links;
* ``user_taggedartists.dat``: userID, artistID, tagID, day, month, year and ``tags.dat``:
  tagID, tagValue -> the category task, one label per artist by default: the tag most users
  gave it (ties: the smallest tag id), among tags given to at least ``min_tag_artists`` artists
  (rarer tags are personal labels, not genres). ``tags_per_artist: k > 1`` keeps each artist's
  k most given tags as a multi-label relation. Labels are the tag names.

Tag counts are taken on the raw files, before the k-core (reasoning and counts in
docs/data_format.md).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from pmtrec.data.fetch import resolve_files
from pmtrec.data.frames import RawFrames
from pmtrec.data.sources import register
from pmtrec.data.sources.text import read_int_table
from pmtrec.errors import ConfigError, DataError

SOURCE = "lastfm"
FILES = ("user_artists.dat", "user_friends.dat", "user_taggedartists.dat", "tags.dat")


def _positive_int(scfg: dict[str, Any], key: str, default: int) -> int:
    value = scfg.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"dataset.{SOURCE}.{key}: expected an integer >= 1, got {value!r}")
    return value


def read_tags(path) -> pd.Series:
    """tagID -> tag name (``tags.dat``: tagID, tagValue; latin-1)."""
    try:
        df = pd.read_csv(path, sep="\t", dtype=str, encoding="latin-1", keep_default_na=False, quoting=3)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError, OSError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path}: cannot parse as tab-separated values ({msg})") from None
    if list(df.columns) != ["tagID", "tagValue"]:
        raise DataError(f"{path}: header must be 'tagID\\ttagValue'; found {chr(9).join(map(str, df.columns))!r}")
    ids = pd.to_numeric(df["tagID"], errors="coerce")
    if ids.isna().any():
        row = int(ids.isna().to_numpy().nonzero()[0][0])
        raise DataError(f"{path}: line {row + 2}: tagID must be an integer, got {df['tagID'].iloc[row]!r}")
    return pd.Series(df["tagValue"].str.strip().to_numpy(), index=ids.astype("int64").to_numpy(), name="tag")


def artist_tags(tagged: pd.DataFrame, names: pd.Series, *, min_tag_artists: int, per_artist: int) -> pd.DataFrame:
    """``item, category`` rows: each artist's ``per_artist`` most given tags (by the number of
    users who gave it; ties: smaller tag id first) among tags given to >= ``min_tag_artists``
    artists; the category is the tag's name."""
    counts = tagged.groupby(["artistID", "tagID"]).size().rename("n").reset_index()
    spread = counts.groupby("tagID")["artistID"].size()
    counts = counts[counts["tagID"].isin(spread.index[spread >= min_tag_artists])]
    counts = counts.sort_values(["artistID", "n", "tagID"], ascending=[True, False, True], kind="stable")
    top = counts.groupby("artistID", sort=False).head(per_artist)
    unknown = ~top["tagID"].isin(names.index)
    if unknown.any():
        raise DataError(f"lastfm: user_taggedartists.dat uses tagID {int(top['tagID'][unknown].iloc[0])}, "
                        "which tags.dat does not list")
    return pd.DataFrame({"item": top["artistID"].to_numpy(),
                         "category": names.loc[top["tagID"].to_numpy()].to_numpy().astype(str)})


@register(SOURCE, raw_files=True, relations=("social", "category"))
def load(cfg: dict[str, Any]) -> RawFrames:
    scfg = cfg.get("dataset", {}).get(SOURCE) or {}
    min_tag_artists = _positive_int(scfg, "min_tag_artists", 50)
    per_artist = _positive_int(scfg, "tags_per_artist", 1)
    paths = resolve_files(cfg, SOURCE)
    missing = [f for f in FILES if f not in paths]
    if missing:
        raise ConfigError(f"dataset.{SOURCE}.files must list {', '.join(missing)}")
    listens = read_int_table(paths["user_artists.dat"], ("user", "item", "rating"), sep="\t",
                             header=("userID", "artistID", "weight"))
    listens["rating"] = listens["rating"].astype("float64")
    friends = read_int_table(paths["user_friends.dat"], ("user", "friend"), sep="\t", header=("userID", "friendID"))
    tagged = read_int_table(paths["user_taggedartists.dat"], ("userID", "artistID", "tagID"), sep="\t",
                            header=("userID", "artistID", "tagID", "day", "month", "year"))
    names = read_tags(paths["tags.dat"])
    if names.index.duplicated().any():
        raise DataError(f"{paths['tags.dat']}: tagID {int(names.index[names.index.duplicated()][0])} is listed twice")
    if names.duplicated().any():  # two ids, one name: the name would merge two labels
        names = names.where(~names.duplicated(keep=False), names + " #" + names.index.astype(str))
    item_category = artist_tags(tagged, names, min_tag_artists=min_tag_artists, per_artist=per_artist)
    return RawFrames(name=SOURCE, interactions=listens, social=friends,
                     item_category=item_category if len(item_category) else None, coview=None)
