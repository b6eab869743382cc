"""The golden test: refactors keep results bitwise identical on CPU.

tests/golden/synthetic_tiny.json was written by tests/golden/make_golden.py before the
architecture redesign; the same seed must give exactly the same metrics, and the same logged
losses to float32 round-off: an epoch's mean loss is a float32 reduction whose summation order
follows the CPU's vector width (seen: one machine differs from another in the 8th digit of the
category loss, every metric identical).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from golden.make_golden import METHODS, golden_metrics

GOLDEN = json.loads((Path(__file__).parent / "golden" / "synthetic_tiny.json").read_text())


@pytest.mark.parametrize("method", METHODS)
def test_metrics_are_bitwise_those_recorded(method):
    got, want = golden_metrics(method), GOLDEN[method]
    assert {k: v for k, v in got.items() if k != "loss"} == {k: v for k, v in want.items() if k != "loss"}
    assert len(got["loss"]) == len(want["loss"])
    for epoch, (g, w) in enumerate(zip(got["loss"], want["loss"])):
        assert g.keys() == w.keys(), epoch
        assert g == {k: pytest.approx(v, rel=1e-6, abs=0) for k, v in w.items()}, epoch
