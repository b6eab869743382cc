"""Shared fixtures: the synthetic tiny dataset and its run configs (one copy, not one per test file)."""

from __future__ import annotations

import pytest

from pmtrec.config import load_config

TINY = ("dataset.synthetic.size=tiny", "train.progress=false", "train.threads=1", "train.device=cpu")


def tiny_config(*overrides: str, epochs: int = 3, batch_size: int = 256) -> dict:
    """A run config on synthetic tiny: quiet, one CPU thread, short (overrides come last)."""
    return load_config(overrides=[*TINY, f"train.epochs={epochs}", f"train.batch_size={batch_size}", *overrides])


@pytest.fixture(scope="session")
def tiny_data():
    """The prepared synthetic tiny dataset (it depends on the dataset settings only)."""
    from pmtrec.data import prepare_in_memory

    return prepare_in_memory(tiny_config())
