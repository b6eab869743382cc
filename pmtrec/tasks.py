"""Training tasks: each one samples its batch and defines its loss on embedding rows.

A task never sees the embedding tables. It names the rows it needs as *fields*
(field -> (table, global ids); table None passes a tensor through unchanged, e.g.
labels); the trainer gathers those rows once for all tasks
as leaf tensors, so that per-task gradients exist for exactly the touched rows,
and hands each task the gathered embeddings of its fields. How task losses are
combined is the method's business, not the task's.

An auxiliary task samples its batch either on its own (``sample``) or for given anchor rows
(``sample_for``: the rows of its ``anchor_table`` that the main task's batch touches, the
``anchored`` reading of ``train.aux_sampling``, :mod:`pmtrec.training.anchored`).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pmtrec.data.sampling import NegativeSampler
from pmtrec.errors import ConfigError

Fields = dict[str, tuple[str | None, torch.Tensor]]


def bpr_loss(anchor: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Bayesian personalised ranking: -log sigmoid(<a,p> - <a,n>), mean over the batch."""
    diff = (anchor * pos).sum(-1) - (anchor * neg).sum(-1)
    if diff.numel() == 0:  # an empty anchored batch: 0 (zero gradient), not the nan of an empty mean
        return diff.sum()
    return -F.logsigmoid(diff).mean()


class Task(nn.Module):
    """Base class. Subclasses set ``name`` and implement ``sample`` and ``loss``.

    An auxiliary task that can be anchored to the main task's batch also sets ``anchor_table``
    (the table its anchors are rows of) and implements ``sample_for``.
    """

    name: ClassVar[str]
    main: ClassVar[bool] = False
    anchor_table: ClassVar[str | None] = None

    def sample(self, size: int, generator: torch.Generator) -> Fields:
        raise NotImplementedError

    def sample_for(self, anchor_ids: torch.Tensor, generator: torch.Generator) -> Fields:
        """The batch of ``anchor_ids`` (rows of ``anchor_table``), in ``sample``'s field layout.

        Each distinct anchor with at least one edge of this task gives one sample; the others are
        dropped, so the batch may be empty (its loss is then 0).
        """
        raise NotImplementedError

    def loss(self, rows: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError


class _EdgeBPRTask(Task):
    """BPR over (anchor, positive) edges with uniformly sampled negatives."""

    tables: ClassVar[tuple[str, str]]

    def __init__(self, edges: np.ndarray, n_dst: int) -> None:
        super().__init__()
        edges_t = torch.as_tensor(edges, dtype=torch.long)
        self.register_buffer("src", edges_t[:, 0].contiguous(), persistent=False)
        self.register_buffer("dst", edges_t[:, 1].contiguous(), persistent=False)
        self.sampler = NegativeSampler(self.src, self.dst, n_dst)
        if self.anchor_table is not None:  # CSR of each anchor's edges, for sample_for (not the main task)
            order = torch.argsort(self.src, stable=True)
            n_src = max(int(n_dst), int(self.src.max()) + 1 if len(self.src) else 0)
            degree = torch.bincount(self.src, minlength=n_src)
            self.register_buffer("csr_dst", self.dst[order], persistent=False)
            self.register_buffer("csr_degree", degree, persistent=False)
            self.register_buffer("csr_start", torch.cumsum(degree, 0) - degree, persistent=False)

    def _apply(self, fn, recurse=True):  # keep the sampler on the module's device
        out = super()._apply(fn, recurse)
        self.sampler = self.sampler.to(self.src.device)
        return out

    def edges_for(self, idx: torch.Tensor, generator: torch.Generator) -> Fields:
        src, dst = self.src[idx], self.dst[idx]
        neg = self.sampler.sample(src, generator=generator)
        a, b = self.tables
        return {"anchor": (a, src), "pos": (b, dst), "neg": (b, neg)}

    def sample(self, size: int, generator: torch.Generator) -> Fields:
        idx = torch.randint(len(self.src), (size,), generator=generator, device=generator.device)
        return self.edges_for(idx, generator)

    def sample_for(self, anchor_ids: torch.Tensor, generator: torch.Generator) -> Fields:
        """One uniformly drawn edge per distinct anchor with edges, and a negative for it."""
        if self.anchor_table is None:
            raise NotImplementedError(f"task {self.name} samples no batch for anchors")
        src = torch.unique(anchor_ids.to(self.csr_degree.device).long())
        src = src[self.csr_degree[src] > 0]
        deg = self.csr_degree[src]
        # edge start[a] + floor(u * deg[a]), u in [0, 1); the minimum guards u * deg rounding up to deg
        u = torch.rand(len(src), generator=generator, device=generator.device, dtype=torch.float64).to(src.device)
        dst = self.csr_dst[self.csr_start[src] + torch.minimum((u * deg).long(), deg - 1)]
        neg = self.sampler.sample(src, generator=generator)
        a, b = self.tables
        return {"anchor": (a, src), "pos": (b, dst), "neg": (b, neg)}

    def loss(self, rows: dict[str, torch.Tensor]) -> torch.Tensor:
        return bpr_loss(rows["anchor"], rows["pos"], rows["neg"])


class RecTask(_EdgeBPRTask):
    """Main task: BPR on (user, interacted item, non-interacted item); iterated by epochs."""

    name = "rec"
    main = True
    tables = ("user", "item")

    def epoch_batches(self, batch_size: int, generator: torch.Generator):
        """One pass over the training interactions in shuffled batches."""
        perm = torch.randperm(len(self.src), generator=generator, device=generator.device)
        for start in range(0, len(perm), batch_size):
            yield self.edges_for(perm[start:start + batch_size], generator)

    def n_batches(self, batch_size: int) -> int:
        return -(-len(self.src) // batch_size)


class SocialTask(_EdgeBPRTask):
    """BPR on (user, friend, non-friend): socially linked users should be close."""

    name = "social"
    tables = ("user", "user")
    anchor_table = "user"


class CoviewTask(_EdgeBPRTask):
    """BPR on (item, co-viewed item, other item)."""

    name = "coview"
    tables = ("item", "item")
    anchor_table = "item"


class CategoryTask(Task):
    """Cross-entropy of item embeddings against learned category embeddings.

    Items are sampled uniformly among those with a category. An item with several categories
    (a multi-label relation: genres, tags, category paths) has a soft target spread evenly over
    them, so its loss is the mean of -log p(c) over its categories and it counts once, however
    many labels it has. When every item has exactly one category this is plain cross-entropy on
    the rows of ``item_category`` (the same samples and values as a single-label task).
    """

    name = "category"
    anchor_table = "item"

    def __init__(self, item_category: np.ndarray, n_categories: int, dim: int, init_std: float = 0.1,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        pairs = np.asarray(item_category, dtype=np.int64).reshape(-1, 2)
        _, counts = np.unique(pairs[:, 0], return_counts=True)
        self.multi_label = bool(len(counts) and counts.max() > 1)
        if self.multi_label:  # [items, max labels] padded with label 0 at weight 0
            pairs = pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]
            items, starts, counts = np.unique(pairs[:, 0], return_index=True, return_counts=True)
            width = int(counts.max())
            slot = np.arange(len(pairs)) - np.repeat(starts, counts)
            labels = np.zeros((len(items), width), dtype=np.int64)
            weight = np.zeros((len(items), width), dtype=np.float32)
            row = np.repeat(np.arange(len(items)), counts)
            labels[row, slot] = pairs[:, 1]
            weight[row, slot] = np.repeat(1.0 / counts, counts)
            self.register_buffer("items", torch.as_tensor(items), persistent=False)
            self.register_buffer("labels", torch.as_tensor(labels), persistent=False)
            self.register_buffer("weights", torch.as_tensor(weight), persistent=False)
        else:
            self.register_buffer("items", torch.as_tensor(pairs[:, 0]).contiguous(), persistent=False)
            self.register_buffer("labels", torch.as_tensor(pairs[:, 1]).contiguous(), persistent=False)
        # row of each item in items/labels (-1: no category), for sample_for
        row_of = torch.full((int(self.items.max()) + 1 if len(self.items) else 0,), -1, dtype=torch.long)
        row_of[self.items] = torch.arange(len(self.items))
        self.register_buffer("row_of", row_of, persistent=False)
        self.category = nn.Parameter(torch.empty(n_categories, dim))
        with torch.no_grad():
            self.category.normal_(0.0, init_std, generator=generator)

    def sample(self, size: int, generator: torch.Generator) -> Fields:
        idx = torch.randint(len(self.items), (size,), generator=generator, device=generator.device)
        fields: Fields = {"item": ("item", self.items[idx]), "label": (None, self.labels[idx])}
        if self.multi_label:
            fields["weight"] = (None, self.weights[idx])
        return fields

    def sample_for(self, anchor_ids: torch.Tensor, generator: torch.Generator) -> Fields:
        """Each distinct anchor item with a category once (no randomness: its target is fixed)."""
        item = torch.unique(anchor_ids.to(self.row_of.device).long())
        item = item[item < len(self.row_of)]
        idx = self.row_of[item]
        idx = idx[idx >= 0]
        fields: Fields = {"item": ("item", self.items[idx]), "label": (None, self.labels[idx])}
        if self.multi_label:
            fields["weight"] = (None, self.weights[idx])
        return fields

    def loss(self, rows: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = rows["item"] @ self.category.T
        if len(logits) == 0:  # an empty anchored batch: 0 (zero gradient), not the nan of an empty mean
            return logits.sum()
        if "weight" not in rows:
            return F.cross_entropy(logits, rows["label"])
        logp = F.log_softmax(logits, dim=-1).gather(1, rows["label"])
        return -(logp * rows["weight"]).sum(-1).mean()


TASKS = {cls.name: cls for cls in (RecTask, SocialTask, CoviewTask, CategoryTask)}


def build_tasks(data, cfg: dict, generator: torch.Generator | None = None) -> list[Task]:
    """The main task plus every auxiliary task the dataset supports and the config allows.

    ``cfg["tasks"][name]`` is ``auto`` (on if the dataset has the relation), ``true``
    (required: an error if the relation is missing) or ``false``.
    """
    dim, std = cfg["model"]["dim"], cfg["model"]["init_std"]
    available = {
        "social": data.social is not None and len(data.social) > 0,
        "category": data.item_category is not None and len(data.item_category) > 0,
        "coview": data.coview is not None and len(data.coview) > 0,
    }
    tasks: list[Task] = [RecTask(data.train, data.n_items)]
    for name, setting in cfg["tasks"].items():
        if name not in available:
            raise ConfigError(f"tasks.{name}: unknown task (known: {', '.join(available)})")
        if setting not in ("auto", True, False):
            raise ConfigError(f"tasks.{name}: must be auto, true or false, got {setting!r}")
        if setting is False or (setting == "auto" and not available[name]):
            continue
        if not available[name]:
            raise ConfigError(f"tasks.{name}: dataset '{data.name}' has no {name} relation")
        if name == "social":
            tasks.append(SocialTask(data.social, data.n_users))
        elif name == "coview":
            tasks.append(CoviewTask(data.coview, data.n_items))
        else:
            tasks.append(CategoryTask(data.item_category, data.n_categories, dim, std, generator))
    return tasks
