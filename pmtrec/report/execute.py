"""Execute one report notebook with papermill; a failure is one line, not a traceback wall.

    python -m pmtrec.report.execute notebooks/02_main_comparison.ipynb results/notebooks/02_main_comparison.ipynb \\
        --tables results/tables --out-dir results/report/02_main_comparison --datasets ciao,epinions \\
        --prepared ciao=resources/prepared/ciao --bench 'benchmarks/results/*.csv'

Only the parameters the notebook declares (its ``parameters`` cell) are passed, so every notebook
can be run by the same command. The executed notebook keeps its outputs (papermill writes it even
when a cell fails, for inspection). Kernel: ``python3``, which jupyter_client maps to the running
interpreter (the venv's own kernelspec, or ipykernel's built-in one), so no ``ipykernel install``
step is needed.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

from pmtrec.report.notebook import PREFIX


def _error_line(exc) -> str:
    """The useful line of a PapermillExecutionError: our own one-line message when present."""
    lines = []
    last = f"{getattr(exc, 'ename', '')}: {getattr(exc, 'evalue', '')}"
    for item in list(getattr(exc, "traceback", []) or []) + [last]:
        for ln in str(item).splitlines():
            lines.append(_strip_ansi(ln))
    for ln in lines:
        if PREFIX in ln:
            return ln[ln.index(PREFIX) + len(PREFIX):].strip()
    return f"{getattr(exc, 'ename', 'Error')}: {getattr(exc, 'evalue', '')}".strip()


def _strip_ansi(text: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)


def execute(notebook: str | Path, output: str | Path, params: Mapping[str, Any], *, kernel: str = "python3",
            cwd: str | Path = ".", log_output: bool = False) -> Path:
    """Run ``notebook`` -> ``output`` with the declared subset of ``params``; ReportError on failure."""
    import papermill as pm

    from pmtrec.report.data import ReportError

    notebook, output = Path(notebook), Path(output)
    if not notebook.is_file():
        raise ReportError(f"{notebook}: notebook missing")
    os.environ.setdefault("JUPYTER_PREFER_ENV_PATH", "1")  # the venv's kernelspec over a user-level one
    declared = pm.inspect_notebook(str(notebook))
    passed = {k: v for k, v in params.items() if k in declared}
    output.parent.mkdir(parents=True, exist_ok=True)
    # papermill writes as it goes: run into a temporary name and rename on success, so a killed or
    # failed run never leaves a partial notebook under the final name (a failed one is kept aside).
    partial = output.with_name(f".{output.stem}.tmp{output.suffix}")
    try:
        pm.execute_notebook(str(notebook), str(partial), parameters=passed, kernel_name=kernel, cwd=str(cwd),
                            progress_bar=False, log_output=log_output)
    except pm.PapermillExecutionError as exc:
        if partial.exists():
            os.replace(partial, output.with_suffix(".failed.ipynb"))
        raise ReportError(f"{notebook.name}: {_error_line(exc)}") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, output)
    return output


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pmtrec.report.execute", description=__doc__.splitlines()[0])
    p.add_argument("notebook")
    p.add_argument("output")
    p.add_argument("--tables", default="results/tables", help="aggregated tables folder (tables_dir)")
    p.add_argument("--out-dir", required=True, help="figures/tables/section.json folder (out_dir)")
    p.add_argument("--datasets", default="", help="comma-separated datasets to report (default: all)")
    p.add_argument("--prepared", action="append", default=[], metavar="NAME=DIR",
                   help="a prepared dataset folder (degree distributions), repeatable")
    p.add_argument("--bench", action="append", default=[], metavar="GLOB",
                   help="benchmark-suite CSVs (optional), repeatable")
    p.add_argument("--kernel", default="python3")
    p.add_argument("--log-output", action="store_true", help="stream the cells' output")
    args = p.parse_args(argv)
    prepared = {}
    for item in args.prepared:
        name, sep, folder = item.partition("=")
        if not sep:
            p.error(f"--prepared expects NAME=DIR, got {item!r}")
        prepared[name] = folder
    bench = sorted({f for pat in args.bench for f in glob.glob(pat)})
    params = {"tables_dir": args.tables, "out_dir": args.out_dir,
              "datasets": [d for d in args.datasets.split(",") if d], "prepared_dirs": prepared,
              "bench_csvs": bench}
    from pmtrec.errors import PmtrecError

    try:
        execute(args.notebook, args.output, params, kernel=args.kernel, log_output=args.log_output)
    except PmtrecError as exc:
        print(f"{PREFIX}{exc}", file=sys.stderr)
        return 1
    print(f"executed {args.notebook} -> {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
