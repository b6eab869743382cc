"""How many convex solves Nash-MTL's weighting runs per training step (Ciao, the suite's batches).

    PMTREC_MIRROR=../shared/datasets .venv/bin/python -m benchmarks.nash_solves [--steps 23]

Nash-MTL re-solves its subproblem up to ``optim_niter`` (20) times a step, stopping early when the
weights satisfy its stopping rule, so its step time is about that count times one ECOS solve.
Prints the solves and the wall time of each step and the number of ECOS "Solution may be
inaccurate" warnings (its 100-iteration cap). A diagnosis of the step section's Nash-MTL figure,
not a timed benchmark.
"""

from __future__ import annotations

import argparse
import warnings

import torch

from benchmarks import suite
from pmtrec.methods import gradient


def count_solves(n_steps: int) -> tuple[list[int], list[float], int]:
    """Solves per step, seconds per step and ECOS warnings over ``n_steps`` Nash-MTL steps on Ciao."""
    cls = gradient._nash_weighting_class()
    counts: list[int] = []
    solve_optimization = cls._solve_optimization

    def counted(self, gtg):
        calls = [0]
        solve = self.prob.solve

        def tally(*args, **kwargs):
            calls[0] += 1
            return solve(*args, **kwargs)

        self.prob.solve = tally
        try:
            return solve_optimization(self, gtg)
        finally:
            self.prob.solve = solve
            counts.append(calls[0])

    cls._solve_optimization = counted
    try:
        cfg = suite._cfg("ciao", "train.batch_size=4096")
        stepper = suite._Stepper(cfg, suite._data(cfg), "nashmtl")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            seconds = [stepper.step() for _ in range(n_steps)]
    finally:
        cls._solve_optimization = solve_optimization
    return counts, seconds, sum("inaccurate" in str(w.message) for w in caught)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=23, help="steps (the suite times 3 warm-up + 20)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    counts, seconds, inaccurate = count_solves(args.steps)
    print(f"solves per step: {counts}")
    print(f"ms per step:     {[round(s * 1e3) for s in seconds]}")
    print(f"ECOS 'inaccurate' warnings: {inaccurate} over {sum(counts)} solves")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
