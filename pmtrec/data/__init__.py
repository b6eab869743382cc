"""Data layer: sources -> RawFrames -> preprocess -> Prepared -> prepared directory.

Public API::

    from pmtrec.data import (RawFrames, Prepared, load_source, prepare_dataset,
                             write_prepared, read_prepared, dataset_stats, NegativeSampler)
    from pmtrec.data import preprocess  # the function preprocess(raw, pcfg) (module: pmtrec.data.preprocessing)
"""

from __future__ import annotations

import os
import logging
import time
from pathlib import Path
from typing import Any, TextIO

from pmtrec.data.frames import Prepared, RawFrames
from pmtrec.data.preprocessing import preprocess
from pmtrec.data.sources import SOURCES, load_source, register
from pmtrec.data.stats import dataset_stats, format_stats
from pmtrec.data.store import read_prepared, write_prepared


def prepare_in_memory(cfg: dict[str, Any]) -> Prepared:
    """load_source -> preprocess, without writing anything."""
    return preprocess(load_source(cfg), cfg.get("preprocess", {}))


def prepare_dataset(cfg: dict[str, Any], out_dir: str | os.PathLike, *, stream: TextIO | None = None
                    ) -> Prepared:
    """load_source -> preprocess -> write_prepared; the statistics table goes to ``stream``, or,
    by default, to the ``pmtrec.data`` logger at INFO."""
    from pmtrec.config import config_hash

    t0 = time.perf_counter()
    raw = load_source(cfg)
    t1 = time.perf_counter()
    prepared = preprocess(raw, cfg.get("preprocess", {}))
    t2 = time.perf_counter()
    section = {"dataset": cfg.get("dataset"), "preprocess": cfg.get("preprocess")}
    write_prepared(prepared, Path(out_dir), extra_meta={"config": section, "config_hash": config_hash(section)})
    t3 = time.perf_counter()
    text = (f"prepared {prepared.name} -> {out_dir}  (load {t1 - t0:.2f}s, preprocess {t2 - t1:.2f}s, "
            f"write {t3 - t2:.2f}s)\n{format_stats(prepared.stats)}")
    if stream is not None:
        print(text, file=stream)
    else:
        logging.getLogger(__name__).info(text)
    return prepared


def __getattr__(name: str) -> Any:
    if name == "NegativeSampler":  # imported lazily: it needs torch, the rest of the data layer does not
        from pmtrec.data.sampling import NegativeSampler

        return NegativeSampler
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "RawFrames", "Prepared", "SOURCES", "register", "load_source", "preprocess", "prepare_in_memory", "prepare_dataset",
    "write_prepared", "read_prepared", "dataset_stats", "format_stats", "NegativeSampler",
]
