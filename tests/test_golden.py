"""The golden test: refactors keep results bitwise identical on CPU.

tests/golden/synthetic_tiny.json was written by tests/golden/make_golden.py before the
architecture redesign; the same seed must give exactly the same metrics and losses.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from golden.make_golden import METHODS, golden_metrics

GOLDEN = json.loads((Path(__file__).parent / "golden" / "synthetic_tiny.json").read_text())


@pytest.mark.parametrize("method", METHODS)
def test_metrics_are_bitwise_those_recorded(method):
    assert golden_metrics(method) == GOLDEN[method]
