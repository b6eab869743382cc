"""Result JSON: the record of a run (``pmtrec train --out``), its only writer and only reader.

:func:`result_record` builds it, :func:`load_result` reads and validates one against
``pmtrec/schemas/result.schema.json`` (aggregate, the embedding analysis and the report's
provenance all read results through it).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

import pmtrec
from pmtrec import evaluate as ev
from pmtrec.config import config_hash
from pmtrec.errors import PmtrecError

RESULT_SCHEMA = "pmtrec.result/1"


class ResultError(PmtrecError):
    """A result file is missing, unreadable or does not match the result schema."""


def git_commit() -> str:
    root = Path(pmtrec.__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def peak_memory_mb(device: torch.device) -> dict:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    out = {"host_peak_rss_mb": rss}
    if device.type == "cuda":
        out["device_peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


def memory_bytes(device: torch.device) -> int | None:
    """Total memory of the device (the host's RAM for the CPU), or None when unknown."""
    try:
        if device.type == "cuda":
            return int(torch.cuda.mem_get_info(device)[1])
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError, RuntimeError):
        return None


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    n = torch.get_num_threads()
    return f"cpu ({platform.processor() or platform.machine()}, {n} thread{'' if n == 1 else 's'})"


def result_record(cfg: dict, data, valid: ev.EvalResult, test: ev.EvalResult, *, best_epoch: int,
                  history: list[dict], device: torch.device, task_names: tuple[str, ...],
                  wall_time: float, skipped_batches: int = 0, stopped_by: str = "none") -> dict:
    times = [h["train_time_s"] for h in history]
    return {
        "schema": RESULT_SCHEMA,
        "dataset": data.name, "method": cfg["train"]["method"], "seed": cfg["train"]["seed"],
        "tasks": list(task_names),
        "valid": valid.to_dict(), "test": test.to_dict(),
        "best_epoch": best_epoch, "epochs_run": len(history),
        "stopped_by": stopped_by,  # cap (train.epochs) | patience (early stopping) | none (no training)
        "skipped_batches": int(skipped_batches),  # batches skipped for a non-finite loss/gradient
        "epoch_time_s": float(np.mean(times)) if times else 0.0,
        "wall_time_s": wall_time,
        "memory": peak_memory_mb(device),
        "device": describe_device(device),
        "curves": history,
        "config": cfg, "config_hash": config_hash(cfg),
        "version": pmtrec.__version__, "git_commit": git_commit(),
        "host": platform.node(), "pid": os.getpid(),
    }


# ------------------------------------------------------------------------------------ loading
@lru_cache(maxsize=1)
def _validator():
    import jsonschema

    schema = json.loads(resources.files("pmtrec").joinpath("schemas/result.schema.json").read_text())
    return jsonschema.Draft202012Validator(schema)


def validate_result(result: Any, name: str = "<result>") -> dict:
    """Check ``result`` against the result schema; raise a one-line ResultError naming ``name``."""
    import jsonschema

    errors = list(_validator().iter_errors(result))
    if errors:
        err = jsonschema.exceptions.best_match(errors)
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path).lstrip(".")
        msg = err.message if len(err.message) < 200 else err.message[:200] + "..."
        raise ResultError(f"{name}: malformed result ({where or 'top level'}: {msg})")
    return result


def find_results(inputs) -> list[Path]:
    """Result JSONs among ``inputs``: files as given, folders searched recursively for JSON files
    whose ``schema`` is a result record (others are skipped: probes, manifests), sorted."""
    out: list[Path] = []
    for item in inputs:
        item = Path(item)
        if item.is_file():
            out.append(item)
            continue
        if not item.is_dir():
            raise ResultError(f"{item}: no such result file or folder")
        for path in sorted(item.rglob("*.json")):
            try:
                head = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue  # not ours; a broken result named as a file is refused by load_result
            if isinstance(head, dict) and head.get("schema") == RESULT_SCHEMA:
                out.append(path)
    if not out:
        raise ResultError(f"no result JSONs (schema {RESULT_SCHEMA}) in {', '.join(map(str, inputs))}")
    return out


def load_result(path: str | Path) -> dict:
    """Read and validate one result JSON."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ResultError(f"{path}: cannot read result ({exc.strerror or exc})") from None
    try:
        result = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    return validate_result(result, str(path))


def write_result(path: str | Path, record: dict) -> None:
    """Validate ``record`` against the schema, then write it atomically."""
    from pmtrec.io import write_json

    write_json(path, validate_result(record, str(path)))
