"""The step engine: sample every task, gather the touched rows, let the method combine, step.

One step works on the embedding rows the batch touches (:mod:`pmtrec.training.rows`). The
combined row gradient is written back into the tables' ``.grad`` (dense Adam), or only those
rows are updated by a row-wise lazy Adam (``lazy_adam``, :mod:`pmtrec.optim`). Non-finite
losses and gradients are handled by :mod:`pmtrec.training.guard`, checkpoints by
:mod:`pmtrec.training.checkpoint`, evaluation by :mod:`pmtrec.training.evaluator`, the result
record by :mod:`pmtrec.training.results`.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from pmtrec import evaluate as ev
from pmtrec import logs
from pmtrec.config import check_run_config
from pmtrec.errors import ConfigError, TrainingError
from pmtrec.methods import Method, StepContext, build_method
from pmtrec.methods.registry import resolve
from pmtrec.model import MF
from pmtrec.optim import RowAdam
from pmtrec.tasks import Fields, RecTask, Task, build_tasks
from pmtrec.training.anchored import anchored_fields
from pmtrec.training.checkpoint import Checkpointing
from pmtrec.training.epoch_log import EpochLog
from pmtrec.training.evaluator import Evaluator
from pmtrec.training.guard import NonFiniteChecks, NonFiniteFlags
from pmtrec.training.results import result_record
from pmtrec.training.rows import Leaves, StepBatch, gather_batch, gather_rows, leaf_losses, scatter_leaf_grads, task_losses

EARLY_STOP_METRIC = "ndcg@20"
_LOG = logs.get_logger(__name__)


def resolve_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise ConfigError(f"train.device: unknown device '{spec}' (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device: '{spec}' requested but CUDA is not available")
    return device


class Trainer(NonFiniteChecks, Checkpointing):
    """Trains one model with one method on one prepared dataset."""

    def __init__(self, cfg: dict, data) -> None:
        self.cfg, self.data = cfg, data
        tcfg = cfg["train"]
        check_run_config(cfg)  # the one place run settings are checked (types and bounds)
        self.device = resolve_device(tcfg["device"])
        if tcfg.get("threads"):
            torch.set_num_threads(int(tcfg["threads"]))
        torch.manual_seed(int(tcfg["seed"]))
        init_gen = torch.Generator().manual_seed(int(tcfg["seed"]))
        self.model = MF(data.n_users, data.n_items, cfg["model"]["dim"], cfg["model"]["init_std"], init_gen)
        method_name = tcfg["method"]
        probe_cls = resolve(method_name, tcfg.get("method_params") or {})[0]
        tasks = build_tasks(data, cfg, init_gen)
        if probe_cls.task_set == "main":  # e.g. `single`: the main task alone
            tasks = tasks[:1]
        self.tasks: list[Task] = tasks
        self.task_names = tuple(t.name for t in tasks)
        owned = [id(p) for t in tasks for p in t.parameters()]
        if len(owned) != len(set(owned)):  # per-task gradients come from one backward of the summed losses
            raise ConfigError("tasks share a parameter; each task's own parameters must be its alone")
        self.method: Method = build_method(method_name, self.task_names, tcfg.get("method_params") or {})
        self.model.to(self.device)
        for t in self.tasks:
            t.to(self.device)
        self.method.to(self.device)
        self.gen = torch.Generator(device=self.device).manual_seed(int(tcfg["seed"]) + 1)
        self.batch_size = int(tcfg["batch_size"])
        self.aux_batch_size = int(tcfg.get("aux_batch_size") or self.batch_size)
        self.aux_sampling = tcfg.get("aux_sampling", "independent")
        self.l2 = float(tcfg["l2"])
        self.epochs = int(tcfg["epochs"])
        self.eval_every = int(tcfg.get("eval_every", 1))
        self.sparse = tcfg["optimizer"] == "lazy_adam"
        self._check_step_memory(int(cfg["model"]["dim"]))
        self._build_optimizers(float(tcfg["lr"]))
        self.evaluator = Evaluator(cfg, data, self.device)
        self.ks = self.evaluator.ks
        self.user_groups, self.item_groups = self.evaluator.user_groups, self.evaluator.item_groups
        # on the device once, for every epoch's log
        self._log_groups = tuple(torch.as_tensor(g, dtype=torch.long, device=self.device)
                                 for g in (self.user_groups, self.item_groups))
        self.on_nonfinite = tcfg.get("on_nonfinite", "stop")
        # Per-step host check on CPU (free) and whenever batches may be skipped (skipping needs
        # the answer before the optimizer step); on CUDA in stop mode a device-side flag instead.
        self._check_each_step = self.device.type == "cpu" or self.on_nonfinite == "skip"
        self.skipped_batches, self._epoch_skipped = 0, 0
        self.epoch = 0
        self.global_step = 0
        self.history: list[dict] = []
        self._last_valid = None   # the last validated epoch's EvalResult
        self._best_valid = None   # (epoch, EvalResult) of the best validated epoch, this process only
        self.best: dict[str, Any] = {"epoch": -1, "score": -math.inf, "state": None, "bad_epochs": 0}
        self._scratch_bufs: dict[str, torch.Tensor] = {}
        if not self.sparse:
            self._grad_buf = {name: torch.zeros_like(self.model.table(name)) for name in MF.tables}

    def _build_optimizers(self, lr: float) -> None:
        tables = [self.model.user, self.model.item]
        rest = [p for t in self.tasks for p in t.parameters()] + list(self.method.parameters())
        self.optimizers: list[torch.optim.Optimizer] = []
        self.row_opt: RowAdam | None = None
        if self.sparse:
            self.row_opt = RowAdam(tables, lr=lr)
            self.optimizers.append(self.row_opt)
            if rest:
                self.optimizers.append(torch.optim.Adam(rest, lr=lr))
        else:
            self.optimizers.append(torch.optim.Adam(tables + rest, lr=lr))

    def _sample(self, rec_fields: Fields) -> list[Fields]:
        if self.aux_sampling == "anchored":  # auxiliary batches for the rec batch's rows (pmtrec/training/anchored.py)
            return [rec_fields] + anchored_fields(self.tasks[1:], rec_fields, self.gen)
        return [rec_fields] + [t.sample(self.aux_batch_size, self.gen) for t in self.tasks[1:]]

    def train_step(self, rec_fields: Fields, log: EpochLog, batch_no: int,
                   flags: NonFiniteFlags | None = None) -> bool:
        """One optimizer step; False when the batch was skipped (non-finite, ``on_nonfinite: skip``)."""
        batch = gather_batch(self._sample(rec_fields))
        ctx, leaves = self.step_context(batch)
        if self._check_each_step and not bool(torch.isfinite(ctx.losses.detach()).all()):
            bad = [n for n, v in zip(self.task_names, ctx.losses.tolist()) if not math.isfinite(v)]
            self._nonfinite(f"non-finite loss in task(s) {', '.join(bad)}", batch_no)
            self.global_step += 1
            return False
        rows = ctx.source.rows
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        out = self.method.step(ctx)
        if out.loss is not None:
            out.loss.backward()
            row_grad = scatter_leaf_grads(leaves, [leaf.grad for mine in leaves for _, leaf in mine],
                                          self._scratch("row_grad", rows.shape, rows.dtype).zero_(), False)
        else:
            row_grad = out.row_grad
            scale = out.task_param_scale
            for k, grads in enumerate(ctx.param_grads()):
                for p, g in zip(ctx.source.task_params[k], grads):
                    p.grad = g if scale is None else g * scale[k]
        row_grad = row_grad + self.l2 * rows.detach()
        if self._check_each_step:
            what = self._nonfinite_grads(row_grad, ctx)
            if what is not None:
                self._nonfinite(what, batch_no)
                for opt in self.optimizers:
                    opt.zero_grad(set_to_none=True)
                self.global_step += 1
                return False
        elif flags is not None:
            flags.update(ctx.losses.detach(), self._grads_finite(row_grad), batch_no)
        self._apply_row_grad(batch, row_grad, rows)
        self.method.after_step(ctx)
        log.add(ctx, out, batch)
        self.global_step += 1
        return True

    def step_context(self, batch: StepBatch) -> tuple[StepContext, Leaves]:
        """The method's view of one step: losses from per-field leaves, per-task gradients on demand."""
        user_w, item_w = self.model.user, self.model.item
        rows = gather_rows(user_w, item_w, batch)
        losses, leaves = leaf_losses(self.tasks, batch, rows)
        task_params = [list(t.parameters()) for t in self.tasks]

        def recompute() -> torch.Tensor:
            with torch.no_grad():
                fresh = gather_rows(user_w, item_w, batch)
                return task_losses(self.tasks, batch, fresh)

        def per_task_grads() -> tuple[torch.Tensor, list[list[torch.Tensor]]]:
            flat = [leaf for mine in leaves for _, leaf in mine]
            params = [p for ps in task_params for p in ps]  # each task's own: disjoint (checked in __init__)
            got = torch.autograd.grad(losses.sum(), flat + params, allow_unused=True)
            G = scatter_leaf_grads(leaves, got[:len(flat)],
                                   self._scratch("task_grads", (len(self.tasks), *rows.shape), rows.dtype).zero_(), True)
            it = iter(got[len(flat):])
            pgrads = [[g if g is not None else torch.zeros_like(p) for p, g in zip(ps, it)] for ps in task_params]
            return G, pgrads

        ctx = StepContext.for_rows(losses, self.task_names, rows, len(batch.user_ids),
                                   torch.cat([batch.user_ids, batch.item_ids]), batch.touched, task_params,
                                   self.epoch, self.epochs, self.global_step, recompute_losses=recompute,
                                   grads_fn=per_task_grads, touch_counts=lambda: batch.counts)
        return ctx, leaves

    def _scratch(self, name: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """A contiguous tensor of ``shape`` on a buffer reused across steps (contents undefined).

        Valid until the next step: a fresh allocation of tens of MB is page-faulted in on every
        step (measured: 22 ms of zero-filling per step for the [K, R, d] task gradients on synthetic
        large, against 4 ms on a reused buffer).
        """
        numel = math.prod(shape)
        buf = self._scratch_bufs.get(name)
        if buf is None or buf.numel() < numel or buf.dtype != dtype:
            buf = torch.empty(int(numel * 1.25) + 1, dtype=dtype, device=self.device)  # headroom: R varies
            self._scratch_bufs[name] = buf
        return buf[:numel].view(shape)

    def _apply_row_grad(self, batch: StepBatch, row_grad: torch.Tensor, rows: torch.Tensor) -> None:
        """Update the tables from the combined row gradient, then step every other optimizer.

        Lazy Adam takes the rows directly, with ``rows`` (the step's gather, i.e. the tables'
        current rows) to spare it a gather; dense Adam reads them from the tables' reused (otherwise
        zero) gradient buffers, whose written rows are cleared again afterwards.
        """
        n_u = len(batch.user_ids)
        parts = [("user", batch.user_ids, row_grad[:n_u], rows[:n_u]),
                 ("item", batch.item_ids, row_grad[n_u:], rows[n_u:])]
        if self.row_opt is not None:
            self.row_opt.step_rows([(ids, grad, now) for _, ids, grad, now in parts])
        else:
            for name, ids, grad, _ in parts:
                self._grad_buf[name].index_copy_(0, ids, grad)
                self.model.table(name).grad = self._grad_buf[name]
        for opt in self.optimizers:
            if opt is not self.row_opt:
                opt.step()
        if self.row_opt is None:  # clear only the rows written, not the whole table
            for name, ids, _, _ in parts:
                self._grad_buf[name].index_fill_(0, ids, 0.0)

    def _check_step_memory(self, dim: int) -> None:
        """A batch whose step cannot fit in memory is a config error, not a failed allocation."""
        from pmtrec.training.results import memory_bytes

        rec = min(self.batch_size, len(self.data.train))
        if self.aux_sampling == "anchored":  # one sample per rec user (social), per rec item (2 per interaction)
            aux = sum(rec if t.anchor_table == "user" else 2 * rec for t in self.tasks[1:])
        else:
            aux = (len(self.tasks) - 1) * self.aux_batch_size
        rows = rec + aux
        need = rows * 3 * dim * 4 * 4  # ~3 embedding fields per sample, float32, x4: leaves, grads, scratch
        have = memory_bytes(self.device)
        if have and need > have:
            which = "train.batch_size" if self.aux_batch_size == self.batch_size else "train.aux_batch_size"
            raise ConfigError(f"{which}: a step with batch {self.batch_size} (auxiliary {self.aux_batch_size}) needs "
                              f"about {need / 2**30:,.0f} GiB, {self.device.type} has {have / 2**30:,.0f} GiB (the "
                              f"training data of '{self.data.name}' has {len(self.data.train):,} interactions)")

    def banner(self) -> str:
        """What is about to run, in two lines: data, tasks and method; device, threads and schedule."""
        from pmtrec.training.results import describe_device

        tcfg, d = self.cfg["train"], self.data
        params = ", ".join(f"{k}={v}" for k, v in sorted((tcfg.get("method_params") or {}).items()))
        return (f"{self.method.name}" + (f" ({params})" if params else "") + f" on {d.name}: {d.n_users:,} users, "
                f"{d.n_items:,} items, {len(d.train):,} training interactions; tasks {', '.join(self.task_names)}\n"
                f"{describe_device(self.device)}; up to {self.epochs} epochs (patience {tcfg['patience']}"
                + (f" evaluations, validated every {self.eval_every} epochs" if self.eval_every > 1 else "") + "), batch "
                f"{self.batch_size}, lr {tcfg['lr']}, l2 {tcfg['l2']}, seed {tcfg['seed']}")

    def evaluate(self, split: str) -> ev.EvalResult:
        return self.evaluator.evaluate(ev.mf_score_fn(self.model.user.detach(), self.model.item.detach()), split)

    def new_log(self) -> EpochLog:
        """An empty per-epoch log for :meth:`train_step`."""
        return EpochLog(len(self.tasks), *self._log_groups, self.device)

    def train_epoch(self) -> tuple[EpochLog, float]:
        """One pass over the training interactions; returns the epoch's log and its wall time."""
        rec: RecTask = self.tasks[0]  # type: ignore[assignment]
        log = self.new_log()
        t0 = time.perf_counter()
        bar = tqdm(rec.epoch_batches(self.batch_size, self.gen), total=rec.n_batches(self.batch_size), leave=False,
                   desc=f"epoch {self.epoch + 1}/{self.epochs}", disable=not self.cfg["train"].get("progress", True))
        self._epoch_skipped = 0
        flags = None if self._check_each_step else NonFiniteFlags(len(self.tasks), self.device)
        n_batches = 0
        for b, rec_fields in enumerate(bar):
            self.train_step(rec_fields, log, b, flags)
            n_batches += 1
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        if flags is not None:
            flags.raise_if_bad(self.task_names, self.method.name, self.epoch)
        if n_batches and self._epoch_skipped == n_batches:
            raise TrainingError(f"every batch of epoch {self.epoch + 1} had a non-finite loss or gradient with "
                                f"method '{self.method.name}' (train.on_nonfinite=skip); no result written")
        return log, time.perf_counter() - t0

    def run_epoch(self, validate: bool = True) -> dict:
        """One epoch, then (``validate``) the validation metrics; an epoch not validated has ``valid: {}``."""
        log, train_time = self.train_epoch()
        mean_losses = log.loss_sum / max(log.steps, 1)
        if not bool(torch.isfinite(mean_losses).all()):
            raise TrainingError(f"non-finite loss with method '{self.method.name}' in epoch {self.epoch + 1}")
        self.method.end_epoch(self.epoch, mean_losses.float())
        t1 = time.perf_counter()
        self._last_valid = self.evaluate("valid") if validate else None
        valid = self._last_valid.metrics if validate else {}
        return {"epoch": self.epoch + 1, "train_time_s": train_time,
                "eval_time_s": time.perf_counter() - t1 if validate else 0.0, "valid": valid, **log.summary(self.task_names),
                "skipped_batches": self._epoch_skipped}

    def validates(self, epoch: int) -> bool:
        """Whether epoch ``epoch`` (1-based) is validated: every ``train.eval_every``-th and the last."""
        return epoch % self.eval_every == 0 or epoch == self.epochs

    def fit(self, checkpoint: str | Path | None = None, log=None, notice=None) -> dict:
        """Train with early stopping; return the result dictionary (see :func:`result_record`).

        The banner and per-epoch lines go to ``log`` (default: the ``pmtrec.training`` logger at
        INFO), the one-off facts (a resume, the epoch cap) to ``notice`` (default: ``log`` when one
        is given, else the logger at NOTICE, said even with ``-q``).
        """
        if log is None:
            log, notice = _LOG.info, notice or (lambda msg: logs.notice(_LOG, msg))
        notice = log if notice is None else notice
        run = {k: v for k, v in self.cfg.items() if k != "dataset"}  # the dataset's own keys: in its meta.json
        _LOG.debug("run config (dataset %s): %s", self.cfg["dataset"].get("source"), json.dumps(run, default=str))
        wall0 = time.perf_counter()
        if checkpoint is not None:
            checkpoint = Path(checkpoint)
            # a SIGKILL during a save leaves its temporary file (never the checkpoint itself) behind
            for stale in checkpoint.parent.glob(f".{checkpoint.name}.*.tmp"):
                stale.unlink(missing_ok=True)
            if checkpoint.exists():
                self.load_checkpoint(checkpoint)
                notice(f"resumed from {checkpoint} at epoch {self.epoch}")
        log(self.banner())
        patience = int(self.cfg["train"]["patience"])  # in evaluations ("bad_epochs" counts those)
        while self.epoch < self.epochs and self.best["bad_epochs"] < patience:
            entry = self.run_epoch(validate=self.validates(self.epoch + 1))
            self.epoch += 1
            self.history.append(entry)
            losses = " ".join(f"{k}={v:.4f}" for k, v in entry["loss"].items())
            if not entry["valid"]:
                log(f"epoch {self.epoch:3d} | {losses} | {entry['train_time_s']:.2f}s")
            else:
                score = entry["valid"][EARLY_STOP_METRIC]
                if score > self.best["score"]:
                    self.best.update(epoch=self.epoch, score=score, bad_epochs=0, state=self._model_state())
                    self._best_valid = (self.epoch, self._last_valid)
                else:
                    self.best["bad_epochs"] += 1
                log(f"epoch {self.epoch:3d} | {losses} | valid {EARLY_STOP_METRIC}={score:.4f} "
                    f"recall@20={entry['valid']['recall@20']:.4f} | {entry['train_time_s']:.2f}s"
                    + (" *" if self.best["epoch"] == self.epoch else ""))
            if checkpoint is not None:
                self.save_checkpoint(checkpoint)
        stopped_by = "patience" if self.best["bad_epochs"] >= patience else "cap"
        if stopped_by == "cap" and self.epochs and self.best["epoch"] == self.epoch:
            notice(f"note: the epoch cap stopped the run while validation {EARLY_STOP_METRIC} was still improving "
                   f"(best epoch {self.best['epoch']} of {self.epochs}); a higher train.epochs may help")
        if self.best["state"] is not None:
            self._load_model_state(self.best["state"])
        # The best epoch's validation, evaluated on exactly these weights, is reused (evaluation is
        # deterministic); after a resume it is not in memory and is evaluated again.
        kept = self._best_valid
        if kept is not None and kept[0] == self.best["epoch"] and self.best["state"] is not None:
            valid = kept[1]
        else:
            valid = self.evaluate("valid")
        test = self.evaluate("test")
        self.test_result = test  # per-user metrics: pmtrec.training.per_user
        return result_record(self.cfg, self.data, valid, test, best_epoch=self.best["epoch"],
                             history=self.history, device=self.device, task_names=self.task_names,
                             wall_time=time.perf_counter() - wall0, skipped_batches=self.skipped_batches,
                             stopped_by=stopped_by)
