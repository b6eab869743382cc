"""Epinions (Tang et al.): rating.mat (N x 4) + trustnetwork.mat; see tang.py."""

from __future__ import annotations

from typing import Any

from pmtrec.data.frames import RawFrames
from pmtrec.data.sources import register
from pmtrec.data.sources.tang import load_tang


@register("epinions", raw_files=True, relations=("social", "category"))
def load(cfg: dict[str, Any]) -> RawFrames:
    return load_tang(cfg, "epinions")
