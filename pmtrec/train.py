"""The training loop: sample every task, gather the touched rows, let the method combine, step.

One step works on the embedding *rows* the batch touches, never on whole tables:
the rows of every task's fields are deduplicated per table and gathered once into
``rows`` [R, d] (users first, then items). Each task reads its fields from ``rows``
as leaf tensors of its own, so one backward pass of the summed losses yields every
task's gradient separately (tasks x rows x dim, scattered into place), and a
loss-weighting method's one backward pass is scattered the same way. The combined
row gradient is written back into the tables' ``.grad`` (dense Adam), or only those
rows are updated by a row-wise lazy Adam (``lazy_adam``, :mod:`pmtrec.optim`).

Faults (docs/reliability.md): a non-finite task loss or gradient stops the run with a
one-line :class:`TrainingError` naming the method, task, epoch and batch, or, with
``train.on_nonfinite: skip``, skips that batch (counted in the result's
``skipped_batches``). The check runs within every step on CPU; on CUDA, in ``stop``
mode, it is accumulated on the device and read once per epoch (no per-step sync), so the
error names the first bad batch but is raised at the end of its epoch. A checkpoint
(``fit(checkpoint=...)``) is written atomically at the end of every epoch and holds
everything the rest of the run depends on, so a resumed run ends bitwise identical to an
uninterrupted one on CPU.
"""

from __future__ import annotations

import copy
import hashlib
import math
import os
import platform
import resource
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

import pmtrec
from pmtrec import evaluate as ev
from pmtrec.config import config_hash
from pmtrec.errors import ConfigError, TrainingError
from pmtrec.io import atomic_path
from pmtrec.methods import Method, StepContext, build_method
from pmtrec.model import MF
from pmtrec.optim import RowAdam
from pmtrec.tasks import Fields, RecTask, Task, build_tasks

EARLY_STOP_METRIC = "ndcg@20"
ON_NONFINITE = ("stop", "skip")
CHECKPOINT_FORMAT = "pmtrec-checkpoint/1"
# Keys that do not change what a run computes: a checkpoint resumes across them.
RESUME_IGNORED_KEYS = (("train", "threads"), ("train", "progress"))


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


@dataclass
class StepBatch:
    """The rows one step touches and, per task, where each field's rows sit in ``rows``."""

    user_ids: torch.Tensor                   # unique user ids [U]
    item_ids: torch.Tensor                   # unique item ids [I]
    task_index: list[dict[str, torch.Tensor]]  # per task: field -> local row index (or passthrough tensor)
    passthrough: list[set[str]]              # per task: fields that are not rows
    touched: torch.Tensor                    # [K, U + I] bool


def gather_batch(fields: list[Fields]) -> StepBatch:
    """Deduplicate the ids of all tasks' fields per table and index them locally."""
    per_table: dict[str, list[torch.Tensor]] = {"user": [], "item": []}
    for task_fields in fields:
        for table, ids in task_fields.values():
            if table is not None:
                per_table[table].append(ids)
    uniq, inverse = {}, {}
    for table, chunks in per_table.items():
        cat = torch.cat(chunks) if chunks else torch.empty(0, dtype=torch.long)
        uniq[table], inverse[table] = torch.unique(cat, return_inverse=True)
    n_u = len(uniq["user"])
    offset = {"user": 0, "item": n_u}
    cursor = {"user": 0, "item": 0}
    R = n_u + len(uniq["item"])
    device = uniq["user"].device
    touched = torch.zeros(len(fields), R, dtype=torch.bool, device=device)
    task_index, passthrough = [], []
    for k, task_fields in enumerate(fields):
        index, through = {}, set()
        for name, (table, ids) in task_fields.items():
            if table is None:
                index[name] = ids
                through.add(name)
                continue
            start = cursor[table]
            cursor[table] += len(ids)
            local = inverse[table][start:start + len(ids)] + offset[table]
            index[name] = local
            touched[k, local] = True
        task_index.append(index)
        passthrough.append(through)
    return StepBatch(uniq["user"], uniq["item"], task_index, passthrough, touched)


def gather_rows(user_w: torch.Tensor, item_w: torch.Tensor, batch: StepBatch) -> torch.Tensor:
    """The batch's rows, users then items, as one [R, d] tensor (not tracked by autograd).

    ``index_select`` straight into the two halves: on CPU ``table[ids]`` (advanced indexing) costs
    4x as much on a large table (measured 2.8 against 0.7 ms for 24k rows of a 641k-row table), and
    a ``cat`` of the halves would copy them once more.
    """
    n_u = len(batch.user_ids)
    rows = torch.empty(n_u + len(batch.item_ids), user_w.shape[1], dtype=user_w.dtype, device=user_w.device)
    with torch.no_grad():
        torch.index_select(user_w, 0, batch.user_ids, out=rows[:n_u])
        torch.index_select(item_w, 0, batch.item_ids, out=rows[n_u:])
    return rows


def task_losses(tasks: list[Task], batch: StepBatch, rows: torch.Tensor) -> torch.Tensor:
    losses = []
    for task, index, through in zip(tasks, batch.task_index, batch.passthrough):
        feed = {name: (idx if name in through else rows.index_select(0, idx)) for name, idx in index.items()}
        losses.append(task.loss(feed))
    return torch.stack(losses)


Leaves = list[list[tuple[torch.Tensor, torch.Tensor]]]  # per task: (local row index, gathered leaf [n, d])


def leaf_losses(tasks: list[Task], batch: StepBatch, rows: torch.Tensor) -> tuple[torch.Tensor, Leaves]:
    """Task losses where every field's gathered rows are a leaf of their own (``rows`` is not tracked).

    A leaf feeds one task only, so one backward pass of any combination of the losses gives each
    task's row gradients separately: no per-task backward pass, no [R, d] zero-fill per field.
    """
    losses, leaves = [], []
    for task, index, through in zip(tasks, batch.task_index, batch.passthrough):
        feed, mine = {}, []
        for name, idx in index.items():
            if name in through:
                feed[name] = idx
            else:
                feed[name] = leaf = rows.index_select(0, idx).requires_grad_()
                mine.append((idx, leaf))
        losses.append(task.loss(feed))
        leaves.append(mine)
    return torch.stack(losses), leaves


def scatter_leaf_grads(leaves: Leaves, grads, out: torch.Tensor, per_task: bool) -> torch.Tensor:
    """Accumulate the leaves' gradients (in ``leaves`` order; None = unused) into ``out`` by row.

    ``out`` is [K, R, d] (``per_task``) or [R, d]. On CUDA, ``index_put_(accumulate=True)``: the
    sorted, deterministic scatter autograd itself uses for a gather's backward. On CPU,
    ``index_add_`` (alpha 1), which is deterministic there and 3.5x faster (measured: 1.5 against
    5.2 ms for 11 fields of 4096 x 64 rows).
    """
    cuda = out.device.type == "cuda"
    it = iter(grads)
    for k, mine in enumerate(leaves):
        dest = out[k] if per_task else out
        for idx, _ in mine:
            g = next(it)
            if g is None:
                continue
            if cuda:
                dest.index_put_((idx,), g, accumulate=True)
            else:
                dest.index_add_(0, idx, g)
    return out


def _all_finite(t: torch.Tensor) -> bool:
    """Every entry finite. A finite sum settles it in one pass (a non-finite entry makes the sum
    inf or nan); only a non-finite sum, which finite entries can also give by overflow, is checked
    entry by entry."""
    return bool(torch.isfinite(t.sum())) or bool(torch.isfinite(t).all())


class EpochLog:
    """Per-epoch accumulators, kept on the device so the hot path never syncs.

    ``user_groups`` / ``item_groups`` give every user / item its activity group (0 = least
    active); per-row task weights are summed per group as they arrive, so a step writes into a
    few cached group rows instead of scattering into a table-sized accumulator.
    """

    def __init__(self, n_tasks: int, user_groups, item_groups, device: torch.device) -> None:
        z = lambda *s: torch.zeros(*s, device=device, dtype=torch.float64)  # noqa: E731
        self.steps = 0
        self.loss_sum, self.weight_sum = z(n_tasks), z(n_tasks)
        self.cos_sum, self.cos_steps = z(n_tasks, n_tasks), 0
        self.user_group = torch.as_tensor(user_groups, dtype=torch.long, device=device)  # no copy if already there
        self.item_group = torch.as_tensor(item_groups, dtype=torch.long, device=device)
        n_groups = lambda g: int(g.max()) + 1 if len(g) else 0  # noqa: E731
        # per group: [summed weights | visits counted]
        self.user_acc = z(n_groups(self.user_group), 2 * n_tasks)
        self.item_acc = z(n_groups(self.item_group), 2 * n_tasks)
        self.has_rows = False

    def add(self, ctx: StepContext, out, batch: StepBatch) -> None:
        self.steps += 1
        self.loss_sum += ctx.losses.detach()
        self.weight_sum += out.weights
        if ctx.grads_computed:
            gram = ctx.task_gram()  # cosines from the K x K Gram (free when the method built row Grams)
            norm = gram.diagonal().clamp_min(1e-24).sqrt()
            self.cos_sum += gram / (norm[:, None] * norm[None, :])
            self.cos_steps += 1
        if out.row_weights is not None:
            # Like-for-like: task k's weight counts only on rows that the main task and task k both
            # touch (the main task's on rows shared with any other task); otherwise how often a task
            # visits a row, not how the method weighs it, would drive the group means.
            self.has_rows = True
            t = ctx.touched
            both = torch.cat([(t[0] & t[1:].any(0))[None], t[0] & t[1:]]).T.double()  # [R, K]
            acc = torch.cat([out.row_weights.detach().double() * both, both], dim=1)  # [R, 2K]
            n_u = ctx.n_user_rows
            self.user_acc.index_add_(0, self.user_group[batch.user_ids], acc[:n_u])
            self.item_acc.index_add_(0, self.item_group[batch.item_ids], acc[n_u:])

    def summary(self, task_names: tuple[str, ...]) -> dict:
        n = max(self.steps, 1)
        out: dict[str, Any] = {
            "loss": dict(zip(task_names, (self.loss_sum / n).tolist())),
            "weight": dict(zip(task_names, (self.weight_sum / n).tolist())),
        }
        if self.cos_steps:
            cos = (self.cos_sum / self.cos_steps).cpu().numpy()
            out["grad_cosine"] = {f"{a}|{b}": float(cos[i, j]) for i, a in enumerate(task_names)
                                  for j, b in enumerate(task_names) if i < j}
        if self.has_rows:
            out["row_weight_by_user_group"] = _group_means(self.user_acc, task_names)
            out["row_weight_by_item_group"] = _group_means(self.item_acc, task_names)
        return out


def _group_means(acc: torch.Tensor, task_names) -> dict:
    """Mean per-row weight of each task per group, over the visits counted (``acc`` = [sums | counts])."""
    K = len(task_names)
    mean = (acc[:, :K] / acc[:, K:].clamp_min(1)).cpu().numpy()
    return {str(i): dict(zip(task_names, mean[i].tolist())) for i in range(len(mean))}


class Trainer:
    """Trains one model with one method on one prepared dataset."""

    def __init__(self, cfg: dict, data) -> None:
        self.cfg, self.data = cfg, data
        tcfg = cfg["train"]
        self._check_train_config(tcfg)
        self.device = resolve_device(tcfg["device"])
        if tcfg.get("threads"):
            torch.set_num_threads(int(tcfg["threads"]))
        torch.manual_seed(int(tcfg["seed"]))
        init_gen = torch.Generator().manual_seed(int(tcfg["seed"]))
        self.model = MF(data.n_users, data.n_items, cfg["model"]["dim"], cfg["model"]["init_std"], init_gen)
        method_name = tcfg["method"]
        probe_cls = _method_class(method_name, tcfg.get("method_params") or {})
        tasks = build_tasks(data, cfg, init_gen)
        if probe_cls.main_only:
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
        self.l2 = float(tcfg["l2"])
        self.epochs = int(tcfg["epochs"])
        self.sparse = tcfg["optimizer"] == "lazy_adam"
        self._build_optimizers(float(tcfg["lr"]))
        ecfg = cfg["eval"]
        self.ks = tuple(int(k) for k in ecfg["ks"])
        self.user_groups = ev.activity_groups(data.train, data.n_users, int(ecfg["groups"]), column=0)
        self.item_groups = ev.activity_groups(data.train, data.n_items, int(ecfg["groups"]), column=1)
        # on the device once, for every epoch's log
        self._log_groups = tuple(torch.as_tensor(g, dtype=torch.long, device=self.device)
                                 for g in (self.user_groups, self.item_groups))
        self.train_valid = np.concatenate([data.train, data.valid])
        self.on_nonfinite = tcfg.get("on_nonfinite", "stop")
        if self.on_nonfinite not in ON_NONFINITE:
            raise ConfigError(f"train.on_nonfinite: must be stop or skip, got {self.on_nonfinite!r}")
        # Per-step host check on CPU (free) and whenever batches may be skipped (skipping needs
        # the answer before the optimizer step); on CUDA in stop mode a device-side flag instead.
        self._check_each_step = self.device.type == "cpu" or self.on_nonfinite == "skip"
        self.skipped_batches, self._epoch_skipped = 0, 0
        self.epoch = 0
        self.global_step = 0
        self.history: list[dict] = []
        self.best: dict[str, Any] = {"epoch": -1, "score": -math.inf, "state": None, "bad_epochs": 0}
        self._scratch_bufs: dict[str, torch.Tensor] = {}
        if not self.sparse:
            self._grad_buf = {name: torch.zeros_like(self.model.table(name)) for name in MF.tables}

    @staticmethod
    def _check_train_config(tcfg: dict) -> None:
        for key in ("epochs", "batch_size", "patience"):
            if not isinstance(tcfg[key], int) or tcfg[key] < (0 if key == "epochs" else 1):
                raise ConfigError(f"train.{key}: must be a {'non-negative' if key == 'epochs' else 'positive'} "
                                  f"integer, got {tcfg[key]!r}")
        for key in ("lr", "l2"):
            if not isinstance(tcfg[key], (int, float)) or tcfg[key] < 0:
                raise ConfigError(f"train.{key}: must be a non-negative number, got {tcfg[key]!r}")
        if tcfg["optimizer"] not in ("adam", "lazy_adam"):
            raise ConfigError(f"train.optimizer: must be adam or lazy_adam, got {tcfg['optimizer']!r}")

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

    # ---- one step -------------------------------------------------------------------------
    def _sample(self, rec_fields: Fields) -> list[Fields]:
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
        rows = ctx.rows
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
                for p, g in zip(ctx.task_params[k], grads):
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

        ctx = StepContext(losses=losses, task_names=self.task_names, rows=rows, n_user_rows=len(batch.user_ids),
                          row_ids=torch.cat([batch.user_ids, batch.item_ids]), touched=batch.touched,
                          task_params=task_params, epoch=self.epoch, epochs=self.epochs, step=self.global_step,
                          recompute_losses=recompute, grads_fn=per_task_grads)
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

    # ---- non-finite losses and gradients ----------------------------------------------------
    def _other_grads(self) -> list[tuple[str, torch.Tensor]]:
        """The gradients of the tasks' and the method's own parameters, as the optimizers see them."""
        out = [(f"parameters of task {t.name}", p.grad) for t in self.tasks for p in t.parameters()]
        out += [(f"parameters of method '{self.method.name}'", p.grad) for p in self.method.parameters()]
        return [(name, g) for name, g in out if g is not None]

    def _grads_finite(self, row_grad: torch.Tensor) -> torch.Tensor:
        """A 0-d bool tensor on the device (no sync): every gradient of this step is finite."""
        checks = [torch.isfinite(row_grad).all()] + [torch.isfinite(g).all() for _, g in self._other_grads()]
        return torch.stack(checks).all()

    def _nonfinite_grads(self, row_grad: torch.Tensor, ctx: StepContext) -> str | None:
        """None when every gradient of the step is finite, else what is not (host check)."""
        if _all_finite(row_grad):
            bad = [name for name, g in self._other_grads() if not _all_finite(g)]
            return f"non-finite gradient of the {', '.join(dict.fromkeys(bad))}" if bad else None
        what = "non-finite combined row gradient"
        if ctx.grads_computed:  # which tasks' own row gradients were already bad
            G = ctx.grads().detach()
            bad = [n for k, n in enumerate(self.task_names) if not bool(torch.isfinite(G[k]).all())]
            what += (f" (per-task gradient of {', '.join(bad)} non-finite)" if bad
                     else " (every per-task gradient finite: the method's combination is not)")
        else:
            what += " (every task loss finite)"
        return what

    def _nonfinite(self, what: str, batch_no: int) -> None:
        """Stop (raise) or count the skipped batch, per ``train.on_nonfinite``."""
        where = f"with method '{self.method.name}' at epoch {self.epoch + 1}, batch {batch_no + 1}"
        if self.on_nonfinite == "skip":
            self.skipped_batches += 1
            self._epoch_skipped += 1
            return
        raise TrainingError(f"{what} {where}; no result written (train.on_nonfinite=skip skips such batches)")

    # ---- epochs -----------------------------------------------------------------------------
    def evaluate(self, split: str) -> ev.EvalResult:
        targets = self.data.valid if split == "valid" else self.data.test
        exclude = self.data.train if split == "valid" else self.train_valid
        with torch.no_grad():
            return ev.evaluate_ranking(ev.mf_score_fn(self.model.user.detach(), self.model.item.detach()),
                                       self.data.n_users, self.data.n_items, targets, exclude, ks=self.ks,
                                       batch_size=int(self.cfg["eval"]["batch_size"]), device=self.device,
                                       user_groups=self.user_groups)

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

    def run_epoch(self) -> dict:
        log, train_time = self.train_epoch()
        mean_losses = log.loss_sum / max(log.steps, 1)
        if not bool(torch.isfinite(mean_losses).all()):
            raise TrainingError(f"non-finite loss with method '{self.method.name}' in epoch {self.epoch + 1}")
        self.method.end_epoch(self.epoch, mean_losses.float())
        t1 = time.perf_counter()
        valid = self.evaluate("valid")
        return {"epoch": self.epoch + 1, "train_time_s": train_time, "eval_time_s": time.perf_counter() - t1,
                "valid": valid.metrics, **log.summary(self.task_names),
                "skipped_batches": self._epoch_skipped}

    def fit(self, checkpoint: str | Path | None = None, log=print, notice=None) -> dict:
        """Train with early stopping; return the result dictionary (see :func:`result_record`).

        ``log`` gets the per-epoch lines, ``notice`` (default: ``log``) the one-off ones (a resume).
        """
        notice = log if notice is None else notice
        wall0 = time.perf_counter()
        if checkpoint is not None:
            checkpoint = Path(checkpoint)
            # a SIGKILL during a save leaves its temporary file (never the checkpoint itself) behind
            for stale in checkpoint.parent.glob(f".{checkpoint.name}.*.tmp"):
                stale.unlink(missing_ok=True)
            if checkpoint.exists():
                self.load_checkpoint(checkpoint)
                notice(f"resumed from {checkpoint} at epoch {self.epoch}")
        patience = int(self.cfg["train"]["patience"])
        while self.epoch < self.epochs and self.best["bad_epochs"] < patience:
            entry = self.run_epoch()
            self.epoch += 1
            score = entry["valid"][EARLY_STOP_METRIC]
            if score > self.best["score"]:
                self.best.update(epoch=self.epoch, score=score, bad_epochs=0, state=self._model_state())
            else:
                self.best["bad_epochs"] += 1
            self.history.append(entry)
            losses = " ".join(f"{k}={v:.4f}" for k, v in entry["loss"].items())
            log(f"epoch {self.epoch:3d} | {losses} | valid {EARLY_STOP_METRIC}={score:.4f} "
                f"recall@20={entry['valid']['recall@20']:.4f} | {entry['train_time_s']:.2f}s"
                + (" *" if self.best["epoch"] == self.epoch else ""))
            if checkpoint is not None:
                self.save_checkpoint(checkpoint)
        if self.best["state"] is not None:
            self._load_model_state(self.best["state"])
        valid, test = self.evaluate("valid"), self.evaluate("test")
        return result_record(self.cfg, self.data, valid, test, best_epoch=self.best["epoch"],
                             history=self.history, device=self.device, task_names=self.task_names,
                             wall_time=time.perf_counter() - wall0, skipped_batches=self.skipped_batches)

    # ---- state --------------------------------------------------------------------------------
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


class NonFiniteFlags:
    """Device-side record of the first step of an epoch with a non-finite loss or gradient.

    Updated without a host sync (on CUDA, in ``on_nonfinite: stop`` mode); read once per epoch.
    """

    def __init__(self, n_tasks: int, device: torch.device) -> None:
        self.first = torch.full((), -1, dtype=torch.long, device=device)
        self.tasks = torch.zeros(n_tasks, dtype=torch.bool, device=device)
        self.grad = torch.zeros((), dtype=torch.bool, device=device)

    def update(self, losses: torch.Tensor, grads_finite: torch.Tensor, batch_no: int) -> None:
        loss_bad = ~torch.isfinite(losses)
        grad_bad = ~grads_finite
        new = (loss_bad.any() | grad_bad) & (self.first < 0)
        self.first = torch.where(new, torch.full_like(self.first, batch_no), self.first)
        self.tasks |= new & loss_bad
        self.grad |= new & grad_bad

    def raise_if_bad(self, task_names: tuple[str, ...], method: str, epoch: int) -> None:
        first = int(self.first)
        if first < 0:
            return
        bad = [n for n, b in zip(task_names, self.tasks.tolist()) if b]
        what = f"non-finite loss in task(s) {', '.join(bad)}" if bad else "non-finite gradient (every task loss finite)"
        raise TrainingError(f"{what} with method '{method}' at epoch {epoch + 1}, batch {first + 1} (detected at "
                            "the end of the epoch on CUDA); no result written (train.on_nonfinite=skip skips "
                            "such batches)")


def data_fingerprint(data) -> str:
    """Short hash of a prepared dataset's sizes and splits (a checkpoint must resume on the same data)."""
    h = hashlib.sha256(f"{data.name}|{data.n_users}|{data.n_items}".encode())
    for arr in (data.train, data.valid, data.test):
        a = np.ascontiguousarray(arr, dtype=np.int64)
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def _method_class(name: str, params: dict):
    from pmtrec.methods.registry import resolve

    return resolve(name, params)[0]


# ---- results ---------------------------------------------------------------------------------
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


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def result_record(cfg: dict, data, valid: ev.EvalResult, test: ev.EvalResult, *, best_epoch: int,
                  history: list[dict], device: torch.device, task_names: tuple[str, ...],
                  wall_time: float, skipped_batches: int = 0) -> dict:
    times = [h["train_time_s"] for h in history]
    return {
        "schema": "pmtrec.result/1",
        "dataset": data.name, "method": cfg["train"]["method"], "seed": cfg["train"]["seed"],
        "tasks": list(task_names),
        "valid": valid.to_dict(), "test": test.to_dict(),
        "best_epoch": best_epoch, "epochs_run": len(history),
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


def run_mostpop(cfg: dict, data) -> dict:
    """The popularity baseline: every user gets items ranked by training popularity."""
    t0 = time.perf_counter()
    device = resolve_device(cfg["train"]["device"])
    pop = ev.mostpop_scores(data.train, data.n_items).to(device)
    groups = ev.activity_groups(data.train, data.n_users, int(cfg["eval"]["groups"]), column=0)

    def score(users: torch.Tensor) -> torch.Tensor:
        return pop.expand(len(users), -1)

    ks = tuple(int(k) for k in cfg["eval"]["ks"])
    bs = int(cfg["eval"]["batch_size"])
    valid = ev.evaluate_ranking(score, data.n_users, data.n_items, data.valid, data.train, ks, bs, device, groups)
    test = ev.evaluate_ranking(score, data.n_users, data.n_items, data.test,
                               np.concatenate([data.train, data.valid]), ks, bs, device, groups)
    return result_record(cfg, data, valid, test, best_epoch=0, history=[], device=device, task_names=("rec",),
                         wall_time=time.perf_counter() - t0)


def train(cfg: dict, data, checkpoint: str | Path | None = None, log=print, notice=None,
          embeddings: str | Path | None = None) -> dict:
    """Train (or, for ``mostpop``, just rank) and return the result record.

    ``log`` gets the per-epoch lines; ``notice`` (default: ``log``) the one-off ones, e.g. a resume.
    ``embeddings``: a path for the best-epoch tables (:mod:`pmtrec.embeddings`), recorded in the
    result; MostPop has none.
    """
    if cfg["train"]["method"] == "mostpop":
        return run_mostpop(cfg, data)
    trainer = Trainer(cfg, data)
    result = trainer.fit(checkpoint=checkpoint, log=log, notice=notice)
    if embeddings is not None:  # fit() leaves the best epoch's tables in the model
        from pmtrec.embeddings import write_embeddings

        result["embeddings"] = write_embeddings(embeddings, trainer.model.user, trainer.model.item)
    return result
