"""Probes of Ciao embeddings: what `single`, `ew`, `pmtrec` and GradNorm learn (3 seeds).

    PMTREC_MIRROR=../shared/datasets .venv/bin/python -m benchmarks.embedding_probes [--out DIR]

Prepares Ciao (the defaults), trains each method on seeds 0-2 under the default run protocol
(pmtrec/defaults.yaml, 40 epochs) with ``--embeddings``, runs ``pmtrec probe`` on each run and
prints the report's probe table (mean ± 95% t-interval over seeds, chance = permuted rows) and its
reading; writes ``benchmarks/results/embedding_probes_ciao.csv`` (the tidy probe rows). GradNorm
is the best baseline on Ciao validation at the default l2 (docs/method.md). Results already in
``--out`` are reused. About 30 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("single", "ew", "gradnorm", "pmtrec")
SEEDS = (0, 1, 2)


def pmtrec(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pmtrec", *args], check=True, stdout=subprocess.DEVNULL)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "results" / "embedding_probes"), help="work folder (reused)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    data = out / "ciao"
    if not (data / "meta.json").is_file():
        pmtrec("prepare", "--dataset", "ciao", "--out", str(data))
    entries = []
    for method in METHODS:
        for seed in SEEDS:
            result = out / "runs" / f"{method}_seed{seed}.json"
            if not result.is_file():
                pmtrec("train", "--data", str(data), "--method", method, "--seed", str(seed), "--threads", "2", "-q",
                       "--embeddings", str(result.with_suffix(".emb.npz")), "--out", str(result))
            probe = out / "probes" / f"{method}_seed{seed}.json"
            if not probe.is_file():
                pmtrec("probe", "--result", str(result), "--data", str(data), "--out", str(probe))
            entries.append({"path": probe, "dataset": "ciao", "method": method, "seed": seed})
            print(f"{method} seed {seed} done", file=sys.stderr)

    from pmtrec.analysis.tables import probes_table
    from pmtrec.report import embeddings

    probes = probes_table(entries)
    (ROOT / "benchmarks" / "results").mkdir(parents=True, exist_ok=True)
    probes.to_csv(ROOT / "benchmarks" / "results" / "embedding_probes_ciao.csv", index=False)
    summary = embeddings.summarise(embeddings.seed_means(probes, "ciao"))
    table = embeddings.probe_table(summary, "ciao")
    print(table.to_frame().to_markdown(index=False))
    print()
    print(embeddings.probe_reading(summary, "ciao"))
    rows = embeddings.group_rows(probes, "ciao")
    print()
    print(embeddings.group_reading(rows, "ciao"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
