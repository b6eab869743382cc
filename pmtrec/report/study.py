"""The whole report from a results folder: aggregate -> notebooks -> PDF (``pmtrec report``).

What the workflow's aggregate, notebook and report rules do, in one process, for a results
folder anywhere (a study run elsewhere, a colleague's results, the published reference study):
every result JSON says what it is in the study (its ``labels``) and which prepared folder it
read (``data.path``), so nothing else is needed. The notebooks and the typst template are
package data: a non-editable install builds the report.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

from pmtrec.report.data import ReportError

RESULT_SCHEMA = "pmtrec.result/1"
# The workflow config's significance keys that `pmtrec report` passes on to pmtrec.aggregate.
SIGNIFICANCE_KEYS = ("min_seeds", "equivalence_margin", "n_resamples")


def find_results(folders: Iterable[str | Path]) -> list[Path]:
    """Result JSONs under the folders (files whose ``schema`` is a result record), sorted."""
    from pmtrec.training.results import ResultError
    from pmtrec.training.results import find_results as find

    folders = [Path(f) for f in folders]
    for folder in folders:
        if not folder.is_dir():
            raise ReportError(f"{folder}: results folder not found")
    try:
        return find(folders)
    except ResultError as exc:
        raise ReportError(str(exc)) from None


def _prepared_dirs(results: Mapping[str, dict], roots: Sequence[Path],
                   given: Mapping[str, str | Path]) -> dict[str, Path]:
    """Each labelled dataset's prepared folder: ``given``, else the results' ``data.path`` (as
    recorded, or relative to the folder holding the results folder: the workflow's directory)."""
    out = {name: Path(p) for name, p in given.items()}
    for path, r in results.items():
        name = str((r.get("labels") or {}).get("dataset", r["dataset"]))
        if name in out or not r.get("data"):
            continue
        recorded = Path(r["data"]["path"])
        candidates = [recorded] + ([] if recorded.is_absolute() else [root.parent / recorded for root in roots])
        found = next((c for c in candidates if (c / "stats.json").is_file()), None)
        if found is None:
            raise ReportError(f"{path}: its prepared folder {recorded} was not found (give it with "
                              f"--prepared {name}=DIR)")
        out[name] = found
    return out


def build_study_report(folders: Sequence[str | Path], output: str | Path, work: str | Path, *,
                       prepared: Mapping[str, str | Path] | None = None, reference: str = "pmtrec",
                       exclude: Sequence[str] | None = None, log: Callable[[str], None] | None = None,
                       significance: Mapping[str, object] | None = None) -> Path:
    """Tables, executed notebooks and the PDF of the results under ``folders``; returns the PDF.

    ``significance``: the comparisons' settings (``min_seeds``, ``equivalence_margin``,
    ``n_resamples``; the workflow config's ``significance`` keys), each defaulting as there."""
    import importlib.util

    log = log or logging.getLogger(__name__).info
    sig = dict(significance or {})
    unknown = sorted(set(sig) - set(SIGNIFICANCE_KEYS))
    if unknown:
        raise ReportError(f"unknown significance option '{unknown[0]}' (known: {', '.join(SIGNIFICANCE_KEYS)})")
    missing = [m for m in ("papermill", "typst", "seaborn") if importlib.util.find_spec(m) is None]
    if missing:
        raise ReportError(f"the report needs the `report` extra (pip install 'pmtrec[report]'): "
                          f"{', '.join(missing)} not installed")
    from pmtrec.aggregate import aggregate, entries_from_results, write_tables
    from pmtrec.report.build import build_report
    from pmtrec.report.execute import execute
    from pmtrec.report.notebook import NOTEBOOKS, notebook_path

    roots = [Path(f) for f in folders]
    work = Path(work)
    paths = find_results(roots)
    results: dict = {}
    entries = entries_from_results(paths, results)
    for e in entries:  # the workflow's benchmark files sit beside the results folder
        bench = e.get("benchmark")
        if bench and not Path(bench).is_file():
            e["benchmark"] = next((str(r.parent / bench) for r in roots if (r.parent / bench).is_file()), bench)
    datasets = _prepared_dirs(results, roots, prepared or {})
    probes = [p for r in roots for p in sorted((r / "analysis" / "probes").rglob("*.json"))]
    maps = {p.stem: p for r in roots for p in sorted((r / "analysis" / "maps").glob("*.csv"))}
    log(f"{len(entries)} results, {len(datasets)} datasets, {len(probes)} probe files, {len(maps)} maps")
    tables = aggregate(entries, datasets, reference=reference, exclude=exclude, results=results, probes=probes,
                       maps=maps, **sig)
    tables_dir = work / "tables"
    write_tables(tables, tables_dir)
    log(f"tables -> {tables_dir}")
    params = {"tables_dir": str(tables_dir), "datasets": sorted({e["dataset"] for e in entries}),
              "prepared_dirs": {k: str(v) for k, v in datasets.items()}, "bench_csvs": []}
    sections = []
    for name in NOTEBOOKS:
        out_dir = work / "report" / name
        execute(notebook_path(name), work / "notebooks" / f"{name}.ipynb", {**params, "out_dir": str(out_dir)})
        sections.append(out_dir)
        log(f"executed {name}")
    return build_report(sections, output, tables_dir=tables_dir, results=paths)
