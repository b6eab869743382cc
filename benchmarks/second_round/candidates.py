"""The second round's candidates (issue 19) as named methods, for the screening study only.

A plugin (docs/extending.md), so the catalogue, the docs and every other study stay as they are:
``plugins: [benchmarks.second_round.candidates]`` in benchmarks/second_round/screen.yaml. Each arm
is PMTRec (or EW) with one switch of docs/method.md's pre-registration set; a switch given again in
``method_params`` would override it, so the screening config sets none of them.
"""

from __future__ import annotations

import inspect

from pmtrec.methods import register
from pmtrec.methods.pmtrec import PMTRec
from pmtrec.methods.simple import EqualWeight


def _arm(base, name: str, label: str, colour: str, order: int, tunable=None, **switches):
    """A subclass of ``base`` named ``name`` whose constructor defaults ``switches``."""

    def __init__(self, task_names, **params):
        base.__init__(self, task_names, **{**switches, **params})

    sig = inspect.signature(base.__init__)  # the catalogue reads parameters and defaults from it
    __init__.__signature__ = sig.replace(parameters=[
        p.replace(default=switches[p.name]) if p.name in switches else p for p in sig.parameters.values()])
    attrs = {"name": name, "label": label, "colour": colour, "order": order, "__init__": __init__,
             "__doc__": f"{base.__name__} with {', '.join(f'{k}={v!r}' for k, v in switches.items()) or 'anchored batches'}."}
    if tunable is not None:
        attrs["tunable"] = tunable
    return register(type(name.title().replace("-", ""), (base,), attrs))


# Anchored batches are a trainer option (train.aux_sampling, set in the config's method_params):
# these two arms are EW and PMTRec unchanged under another name.
_arm(EqualWeight, "ew-anchored", "EW (anchored)", "#6677BB", 21)
_arm(PMTRec, "pmtrec-anchored", "PMTRec (anchored)", "#F0A070", 201)
_arm(PMTRec, "pmtrec-softmax", "PMTRec (softmax of normalised norms)", "#AA3377", 202, weighting="softmax_norms")
_arm(PMTRec, "pmtrec-persample", "PMTRec (per-sample norms)", "#228833", 203, norms="per_sample")
_arm(PMTRec, "pmtrec-ema", "PMTRec (EMA memory)", "#66CCEE", 204,
     tunable={**PMTRec.tunable, "memory_decay": (0.5, 0.99)}, memory="ema")
_arm(PMTRec, "pmtrec-cosine", "PMTRec (cosine-gated focus)", "#CCBB44", 205,
     tunable={"gamma": (0.25, 4.0), "tau_end": (0.02, 0.5)}, weighting="cosine")
