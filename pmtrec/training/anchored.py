"""Anchored auxiliary batches (``train.aux_sampling: anchored``).

Each auxiliary task samples its batch for the rows the main task's batch touches, not on its
own: the social task for the rec batch's users, the category and co-view tasks for its items
(positives and negatives alike, both are main-task rows). Every main-task row that has edges
of a task then carries that task in the step, once.
"""

from __future__ import annotations

import torch

from pmtrec.errors import ConfigError
from pmtrec.tasks import Fields, Task


def anchored_fields(tasks: list[Task], rec_fields: Fields, generator: torch.Generator) -> list[Fields]:
    """The auxiliary ``tasks``' fields for the rows of ``rec_fields`` (one list entry per task).

    A task's anchors are the rec batch's ids of its ``anchor_table``; ``sample_for``
    deduplicates them and drops those without edges of the task.
    """
    per_table: dict[str, list[torch.Tensor]] = {}
    for table, ids in rec_fields.values():
        if table is not None:
            per_table.setdefault(table, []).append(ids)
    out = []
    for task in tasks:
        table = task.anchor_table
        if table is None or table not in per_table:
            raise ConfigError(f"train.aux_sampling: anchored needs task '{task.name}' to sample for "
                              f"rows of the main task's batch (its anchor table: {table})")
        out.append(task.sample_for(torch.cat(per_table[table]), generator))
    return out
