"""The saved embedding tables of a run: the only writer and reader of ``*.emb.npz`` files.

A run saves its best-epoch user and item tables beside its result JSON (``pmtrec train
--embeddings FILE``), as float16 in a compressed NumPy archive (about 3.6 MB for Ciao at d = 64;
float16 keeps three significant digits, plenty for probes and maps), and records the file's name,
SHA-256 and shapes in the result (``embeddings``). :func:`read_embeddings` checks that hash when
it is given one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pmtrec.errors import DataError
from pmtrec.io import atomic_path

FORMAT = "pmtrec-embeddings/1"
DTYPE = np.float16


@dataclass
class Embeddings:
    user: np.ndarray  # [n_users, d] float32
    item: np.ndarray  # [n_items, d] float32


def write_embeddings(path: str | os.PathLike, user, item) -> dict:
    """Write the tables (tensors or arrays) to ``path``; returns the result's ``embeddings`` entry."""
    from pmtrec.data.fetch import sha256_file

    user = np.asarray(user.detach().cpu() if hasattr(user, "detach") else user, dtype=DTYPE)
    item = np.asarray(item.detach().cpu() if hasattr(item, "detach") else item, dtype=DTYPE)
    if user.ndim != 2 or item.ndim != 2 or user.shape[1] != item.shape[1]:
        raise ValueError(f"embedding tables must be [n, d] with one d, got {user.shape} and {item.shape}")
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:  # a file object: np.savez would append .npz to a temporary name
            np.savez_compressed(fh, format=np.array(FORMAT), user=user, item=item)
    return {"file": path.name, "sha256": sha256_file(path), "dtype": str(np.dtype(DTYPE)),
            "users": int(user.shape[0]), "items": int(item.shape[0]), "dim": int(user.shape[1])}


def read_embeddings(path: str | os.PathLike, sha256: str | None = None) -> Embeddings:
    """The tables of ``path`` as float32; a one-line DataError for a missing, foreign or altered file."""
    from pmtrec.data.fetch import verify

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: embeddings file not found")
    verify(path, sha256, delete=False)
    try:
        with np.load(path, allow_pickle=False) as z:
            if "format" not in z.files or str(z["format"]) != FORMAT:
                raise DataError(f"{path}: not a {FORMAT} file")
            user, item = z["user"].astype(np.float32), z["item"].astype(np.float32)
    except DataError:
        raise
    except Exception as exc:  # a truncated or foreign file
        raise DataError(f"{path}: unreadable embeddings file ({type(exc).__name__})") from None
    return Embeddings(user=user, item=item)
