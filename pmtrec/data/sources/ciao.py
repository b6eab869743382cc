"""Ciao (Tang et al.): rating.mat (N x 5) + trustnetwork.mat; see tang.py."""

from __future__ import annotations

from typing import Any

from pmtrec.data.frames import RawFrames
from pmtrec.data.sources import register
from pmtrec.data.sources.tang import load_tang


@register("ciao", raw_files=True, relations=("social", "category"))
def load(cfg: dict[str, Any]) -> RawFrames:
    return load_tang(cfg, "ciao")
