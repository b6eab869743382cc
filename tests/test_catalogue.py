"""The catalogue (pmtrec.methods.registry): every name's metadata, and what is derived from it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pmtrec.methods import METHODS, MODELS, VARIANTS, available, build_method, entries, entry
from pmtrec.methods.registry import markdown_table, method_parameters, register, unregister
from pmtrec.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
TASKS = ("rec", "social", "category", "coview")


def test_every_name_has_its_report_metadata():
    es = entries()
    assert [e.name for e in es] == sorted(available(), key=lambda n: (entry(n).order, n))
    assert all(e.label and re.fullmatch(r"#[0-9A-F]{6}", e.colour) for e in es)
    assert len({e.colour for e in es}) == len(es)  # one colour per method in every figure
    assert len({e.order for e in es}) == len(es)
    assert {e.family for e in es} == {"baseline model", "loss weighting", "weighting from gradients", "gradient"}


def test_variants_fix_switches_of_their_base():
    for name, v in VARIANTS.items():
        e = entry(name)
        assert e.kind == "variant" and v.base in METHODS
        assert set(v.switches) <= set(method_parameters(METHODS[v.base]))
        assert not set(v.switches) & set(e.params)  # a variant's switches are not its parameters
        assert type(build_method(name, TASKS)) is METHODS[v.base]


@pytest.mark.parametrize("name", sorted(METHODS))
def test_tunable_ranges_are_accepted_by_the_constructor(name):
    cls = METHODS[name]
    for key, values in cls.tunable.items():
        assert key in method_parameters(cls)
        for value in values:
            build_method(name, TASKS, {key: value})


@pytest.mark.parametrize("name", sorted(METHODS))
def test_stateful_is_true_exactly_for_methods_with_state(name):
    """`stateful` (checkpointed state) matches what the method keeps: buffers, parameters or hooks."""
    from pmtrec.methods.base import Method

    cls = METHODS[name]
    m = build_method(name, TASKS)
    has_state = bool(m.state_dict()) or any(getattr(cls, h) is not getattr(Method, h)
                                           for h in ("after_step", "end_epoch"))
    assert cls.stateful == has_state, name


def test_baseline_models_rank_without_training():
    import numpy as np

    assert set(MODELS) == {"mostpop"} and not entry("mostpop").trains
    scores = MODELS["mostpop"]().item_scores(np.array([[0, 1], [1, 1], [2, 0]]), 3)
    assert scores.tolist() == [1.0, 2.0, 0.0]
    with pytest.raises(ConfigError, match="baseline model"):
        build_method("mostpop", TASKS)


def test_unknown_names_suggest_the_closest():
    with pytest.raises(ConfigError, match=r"unknown method 'pmtrek'; did you mean 'pmtrec'"):
        entry("pmtrek")
    with pytest.raises(ConfigError, match=r"train.method_params.tua: .*did you mean 'tau'"):
        build_method("pmtrec", TASKS, {"tua": 1.0})


def test_register_refuses_a_taken_name_and_non_methods():
    class Again(METHODS["ew"]):
        name = "ew"

    with pytest.raises(ValueError, match="registered twice"):
        register(Again)
    with pytest.raises(TypeError):
        register(type("X", (), {"name": "x"}))
    unregister("x")


def test_cli_json_is_the_catalogue():
    out = subprocess.run([sys.executable, "-m", "pmtrec", "methods", "--json"], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert json.loads(out) == json.loads(json.dumps([e.to_dict() for e in entries()], default=list))


def test_docs_table_is_the_generated_catalogue():
    text = (ROOT / "docs/methods.md").read_text()
    block = re.search(r"<!-- catalogue:start[^\n]*-->\n(.*?)<!-- catalogue:end -->", text, re.S).group(1)
    assert block == markdown_table(), "regenerate: pmtrec methods --markdown (docs/methods.md, Defaults)"


def test_report_style_reads_the_catalogue():
    from pmtrec.report import style

    assert style.label("gradnorm") == "GradNorm" and style.color("pmtrec") == entry("pmtrec").colour
    assert style.order_methods(["pmtrec", "ew", "zzz", "mostpop"]) == ["mostpop", "ew", "pmtrec", "zzz"]
    assert style.label("zzz") == "zzz"  # unknown names: as given, a stable fallback colour
    assert style.color("zzz") == style.color("zzz")
