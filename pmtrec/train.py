"""Training, the public entry point: ``train(cfg, data)`` runs one method (or baseline model).

The implementation is the :mod:`pmtrec.training` package, one module per job: rows (gathering
and scattering the touched embedding rows), trainer (the step engine and the epoch loop), guard
(non-finite losses and gradients), epoch_log, checkpoint, evaluator and results (the one writer
and reader of result JSON). This module keeps the names callers import.
"""

from pmtrec.training.checkpoint import CHECKPOINT_FORMAT, RESUME_IGNORED_KEYS, data_fingerprint
from pmtrec.training.epoch_log import EpochLog
from pmtrec.training.evaluator import Evaluator
from pmtrec.training.guard import ON_NONFINITE, NonFiniteFlags, _all_finite
from pmtrec.training.results import describe_device, git_commit, peak_memory_mb, result_record
from pmtrec.training.rows import StepBatch, gather_batch, gather_rows, leaf_losses, scatter_leaf_grads, task_losses
from pmtrec.training.run import run_baseline_model, train
from pmtrec.training.trainer import EARLY_STOP_METRIC, Trainer, resolve_device

__all__ = [
    "CHECKPOINT_FORMAT", "EARLY_STOP_METRIC", "ON_NONFINITE", "RESUME_IGNORED_KEYS", "EpochLog", "Evaluator",
    "NonFiniteFlags", "StepBatch", "Trainer", "_all_finite", "data_fingerprint", "describe_device",
    "gather_batch", "gather_rows", "git_commit", "leaf_losses", "peak_memory_mb", "resolve_device",
    "result_record", "run_baseline_model", "scatter_leaf_grads", "task_losses", "train",
]
