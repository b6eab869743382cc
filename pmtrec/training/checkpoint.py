"""Checkpoints: written atomically at the end of every epoch, holding everything the rest of the
run depends on, so a resumed run ends bitwise identical to an uninterrupted one on CPU."""

from __future__ import annotations

import copy
import hashlib
import os
from pathlib import Path

import numpy as np
import torch

from pmtrec.config import HASH_IGNORED_KEYS, config_hash
from pmtrec.errors import TrainingError
from pmtrec.io import atomic_path

CHECKPOINT_FORMAT = "pmtrec-checkpoint/1"
RESUME_IGNORED_KEYS = HASH_IGNORED_KEYS  # kept out of config_hash too


class Checkpointing:
    """Save and restore a trainer's state (a mixin of :class:`pmtrec.training.trainer.Trainer`)."""

    def _model_state(self) -> dict:
        return {"model": copy.deepcopy(self.model.state_dict()),
                "tasks": [copy.deepcopy(t.state_dict()) for t in self.tasks]}

    def _load_model_state(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        for t, s in zip(self.tasks, state["tasks"]):
            t.load_state_dict(s)

    def _resume_hash(self) -> str:
        cfg = copy.deepcopy(self.cfg)
        for section, key in RESUME_IGNORED_KEYS:
            cfg.get(section, {}).pop(key, None)
        return config_hash(cfg)

    def save_checkpoint(self, path: str | Path) -> None:
        """Everything the rest of the run depends on, written atomically (temp file, fsync, rename)."""
        state = {
            "format": CHECKPOINT_FORMAT, "config_hash": config_hash(self.cfg), "resume_hash": self._resume_hash(),
            "data": data_fingerprint(self.data), "device_type": self.device.type,
            "epoch": self.epoch, "global_step": self.global_step, "skipped_batches": self.skipped_batches,
            **self._model_state(), "method": self.method.state_dict(),
            "optimizers": [o.state_dict() for o in self.optimizers], "generator": self.gen.get_state(),
            "torch_rng": torch.get_rng_state(), "history": self.history, "best": self.best,
            "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None,
        }
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                torch.save(state, fh)
                fh.flush()
                os.fsync(fh.fileno())

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore a checkpoint of this run; a one-line TrainingError for anything else."""
        restart = "; delete it to start the run afresh"
        try:
            # weights_only: tensors and plain containers only, never arbitrary pickled objects.
            state = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as exc:  # a truncated, empty or foreign file
            reason = (str(exc).strip().splitlines() or [""])[0][:120]
            raise TrainingError(f"{path}: unreadable checkpoint ({type(exc).__name__}"
                                f"{': ' + reason if reason else ''}){restart}") from None
        if not isinstance(state, dict) or "epoch" not in state or "optimizers" not in state:
            raise TrainingError(f"{path}: not a pmtrec checkpoint{restart}")
        if state.get("format", CHECKPOINT_FORMAT) != CHECKPOINT_FORMAT:
            raise TrainingError(f"{path}: checkpoint format {state.get('format')!r}, expected "
                                f"{CHECKPOINT_FORMAT!r}{restart}")
        if "resume_hash" in state:
            same = state["resume_hash"] == self._resume_hash()
        else:  # written before resume_hash existed
            same = state.get("config_hash") == config_hash(self.cfg)
        if not same:
            raise TrainingError(f"{path}: checkpoint belongs to another config{restart}")
        if "data" in state and state["data"] != data_fingerprint(self.data):
            raise TrainingError(f"{path}: checkpoint belongs to another dataset{restart}")
        if state.get("device_type", self.device.type) != self.device.type:
            raise TrainingError(f"{path}: checkpoint was written on {state['device_type']}, this run is on "
                                f"{self.device.type}{restart}")
        try:
            self._load_model_state(state)
            self.method.load_state_dict(state["method"])
            if len(state["optimizers"]) != len(self.optimizers):
                raise ValueError("optimizer count differs")
            for o, s in zip(self.optimizers, state["optimizers"]):
                o.load_state_dict(s)
            self.gen.set_state(state["generator"].cpu())
            torch.set_rng_state(state["torch_rng"].cpu())
            if state.get("cuda_rng") is not None:
                torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])
            self.epoch, self.global_step = int(state["epoch"]), int(state["global_step"])
            self.skipped_batches = int(state.get("skipped_batches", 0))
            self.history, self.best = state["history"], state["best"]
        except (KeyError, ValueError, TypeError, RuntimeError, IndexError) as exc:
            reason = (str(exc).strip().splitlines() or [""])[0][:120]
            raise TrainingError(f"{path}: checkpoint does not match this run ({type(exc).__name__}: "
                                f"{reason}){restart}") from None


def data_fingerprint(data) -> str:
    """Short hash of a prepared dataset's sizes and splits (a checkpoint must resume on the same data)."""
    h = hashlib.sha256(f"{data.name}|{data.n_users}|{data.n_items}".encode())
    for arr in (data.train, data.valid, data.test):
        a = np.ascontiguousarray(arr, dtype=np.int64)
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]
