"""Assemble reports/pmtrec_report.pdf from the executed notebooks' section folders (typst).

    python -m pmtrec.report.build results/report/0*_* --tables results/tables \\
        --results 'results/runs/**/*.json' -o reports/pmtrec_report.pdf

Each section folder holds ``section.json`` and its SVG figures (:mod:`pmtrec.report.section`).
The builder copies them with the packaged template (pmtrec/report/template.typ) and a ``meta.json`` (title page: git commit,
config hash, date, datasets, hardware) into a temporary folder, compiles with typst (the PyPI
package: offline, no TeX, no browser) and renames the PDF into place, so a reader never sees a
half-written report.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

from pmtrec.io import atomic_path
from pmtrec.report.data import ReportError
from pmtrec.report.section import SECTION_FILE, read_section

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TEMPLATE = Path(__file__).resolve().parent / "template.typ"  # package data
TITLE = "PMTRec: Personalized Multi-Task Training for Recommendation"
SUBTITLE = "Reproduction report"


def _git_commit(cwd: Path = ROOT) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def _result_fields(paths: Iterable[str | Path]) -> dict[str, list[str]]:
    """Distinct git_commit / config_hash / device / version values over the result JSONs."""
    seen: dict[str, dict[str, None]] = {"git_commit": {}, "config_hash": {}, "device": {}, "version": {}}
    from pmtrec.training.results import ResultError, load_result  # the one reader of result JSON

    for p in paths:
        try:
            r = load_result(p)
        except ResultError:  # aggregate has refused it already; the title page lists the readable ones
            continue
        for key in seen:
            if r.get(key):
                seen[key][str(r[key])] = None
    return {k: list(v) for k, v in seen.items()}


def _short_list(values: Sequence[str], n: int = 3, width: int | None = None) -> str:
    vals = [v[:width] if width else v for v in values]
    if not vals:
        return "unknown"
    text = ", ".join(vals[:n])
    return text + (f" (+{len(vals) - n} more)" if len(vals) > n else "")


def provenance(tables_dir: str | Path | None = None, results: Iterable[str | Path] = (),
               config_hash: str | None = None, extra: Mapping[str, str] | None = None,
               date: str | None = None) -> list[tuple[str, str]]:
    """The title page's key/value rows, from the tables, the result JSONs and the workflow."""
    fields = _result_fields(results)
    rows: list[tuple[str, str]] = []
    commits = fields["git_commit"]
    if not commits:
        head = _git_commit()
        commits = [f"{head} (checkout at build time)"] if head else []
    rows.append(("Git commit", _short_list(commits, 2)))
    if config_hash:
        rows.append(("Workflow config hash", config_hash))
    if fields["config_hash"]:
        rows.append(("Run config hashes", f"{len(fields['config_hash'])} distinct "
                                          f"(e.g. {_short_list(fields['config_hash'], 2)})"))
    if fields["version"]:
        rows.append(("pmtrec version", _short_list(fields["version"])))
    if date is None:
        epoch = os.environ.get("SOURCE_DATE_EPOCH")
        when = (datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc) if epoch
                else datetime.datetime.now(datetime.timezone.utc))
        date = when.strftime("%Y-%m-%d %H:%M UTC")
    rows.append(("Date", date))
    devices = fields["device"]
    if tables_dir is not None:
        tdir = Path(tables_dir)
        try:
            stats = pd.read_csv(tdir / "dataset_stats.csv")
            desc = []
            for _, r in stats.iterrows():
                desc.append(f"{r['dataset']} ({int(r['users']):,} users, {int(r['items']):,} items, "
                            f"{int(r['interactions']):,} interactions)")
            if desc:
                rows.append(("Datasets", "; ".join(desc)))
        except (OSError, KeyError, ValueError, pd.errors.EmptyDataError):
            pass
        try:
            summary = pd.read_csv(tdir / "summary.csv")
            main = summary[summary["kind"] == "main"]
            methods = list(dict.fromkeys(main["method"]))
            if methods:
                from pmtrec.report.data import use_study_methods
                from pmtrec.report.style import label, order_methods

                use_study_methods(tdir)  # labels of plugin methods too

                text = ", ".join(label(m) for m in order_methods(methods))
                subsets = [f"{ds}: {', '.join(label(m) for m in order_methods(list(dict.fromkeys(g['method']))))}"
                           for ds, g in main.groupby("dataset", sort=False) if set(g["method"]) != set(methods)]
                if subsets:  # datasets that run fewer methods (datasets.<name>.methods)
                    text += " (only " + "; ".join(subsets) + ")"
                rows.append(("Methods", text))
                rows.append(("Seeds per method", _short_list(sorted({str(int(n)) for n in main["n"]}), 5)))
        except (OSError, KeyError, ValueError, pd.errors.EmptyDataError):
            pass
        try:
            eff = pd.read_csv(tdir / "efficiency.csv")
            devices = list(dict.fromkeys(eff["device"].dropna().astype(str))) or devices
        except (OSError, KeyError, ValueError, pd.errors.EmptyDataError):
            pass
    rows.append(("Hardware", _short_list(devices, 3)))
    rows.append(("Host", f"{os.uname().nodename}, Python {sys.version.split()[0]}"))
    for k, v in (extra or {}).items():
        rows.append((str(k), str(v)))
    return rows


def _main_source(sections: list[str]) -> str:
    lines = ['#import "template.typ": *', '#show: report.with(meta: json("meta.json"))', ""]
    for name in sections:
        lines.append(f'#render-section(json("{name}/{SECTION_FILE}"), "{name}")')
    return "\n".join(lines) + "\n"


def build_report(section_dirs: Sequence[str | Path], output: str | Path, *, tables_dir: str | Path | None = None,
                 results: Iterable[str | Path] = (), config_hash: str | None = None,
                 template: str | Path | None = None, title: str = TITLE, subtitle: str = SUBTITLE,
                 extra: Mapping[str, str] | None = None, keep_source: str | Path | None = None) -> Path:
    """Compile the PDF (atomically) from ``section_dirs`` in the given order; returns its path."""
    import typst

    template = Path(template) if template else DEFAULT_TEMPLATE
    if not template.is_file():
        raise ReportError(f"{template}: report template missing")
    if not section_dirs:
        raise ReportError("no report sections given")
    sections = [(Path(d), read_section(d)) for d in section_dirs]
    prov = provenance(tables_dir, results, config_hash, extra)
    meta = {"title": title, "subtitle": subtitle, "provenance": [list(r) for r in prov],
            "footer": "Built by pmtrec.report.build from the Snakemake workflow's aggregated tables "
                      "(results/tables) and executed notebooks (results/notebooks)."}
    output = Path(output)
    with tempfile.TemporaryDirectory(prefix="pmtrec-report-") as stage_name:
        stage = Path(stage_name)
        shutil.copy(template, stage / "template.typ")
        (stage / "meta.json").write_text(json.dumps(meta, indent=1))
        names = []
        for i, (d, sec) in enumerate(sections, 1):
            name = f"s{i:02d}"
            (stage / name).mkdir()
            (stage / name / SECTION_FILE).write_text(json.dumps(sec))
            for item in sec["items"]:
                if item["kind"] == "figure":
                    shutil.copy(d / item["file"], stage / name / item["file"])
            names.append(name)
        source = _main_source(names)
        (stage / "main.typ").write_text(source)
        if keep_source:
            keep = Path(keep_source)
            if keep.exists():
                shutil.rmtree(keep)
            shutil.copytree(stage, keep)
        kwargs: dict[str, Any] = {}
        epoch = os.environ.get("SOURCE_DATE_EPOCH")
        if epoch:
            kwargs["timestamp"] = int(epoch)
        try:
            pdf = typst.compile(str(stage / "main.typ"), root=str(stage), format="pdf", **kwargs)
        except Exception as exc:  # typst.TypstError: keep its first lines, they name the position
            lines = [ln for ln in str(exc).splitlines() if ln.strip()]
            raise ReportError(f"typst failed to compile the report: {' | '.join(lines[:4])}") from None
        with atomic_path(output) as tmp:
            _write_pdf(pdf, tmp)
    return output


def _write_pdf(pdf: bytes, path: Path) -> None:
    """Write typst's PDF without ``/Suspects false`` in its ``/MarkInfo``: false is the default, and
    poppler 22.12 (Debian 12: pdftotext, pdftoppm, evince) misreads the key and prints "Syntax
    Error: Suspects object is wrong type (boolean)" for every file. The tags themselves stay."""
    import io

    import pypdf

    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(pdf)))
    info = writer.root_object.get("/MarkInfo")
    if info is not None:
        info = info.get_object()
        if "/Suspects" in info and info["/Suspects"] == False:  # noqa: E712 (pypdf's BooleanObject is always truthy)
            del info["/Suspects"]
    with open(path, "wb") as fh:
        writer.write(fh)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pmtrec.report.build", description=__doc__.splitlines()[0])
    p.add_argument("sections", nargs="+", help="section folders (the notebooks' out_dir), in report order")
    p.add_argument("-o", "--output", default="reports/pmtrec_report.pdf")
    p.add_argument("--tables", default=None, help="aggregated tables folder (results/tables)")
    p.add_argument("--results", action="append", default=[], help="result JSONs or glob patterns (provenance)")
    p.add_argument("--config-hash", default=None)
    p.add_argument("--template", default=None)
    p.add_argument("--keep-source", default=None, help="also copy the staged typst sources here")
    args = p.parse_args(argv)
    results = [f for pat in args.results for f in (glob.glob(pat, recursive=True) or [pat])]
    try:
        out = build_report(args.sections, args.output, tables_dir=args.tables, results=results,
                           config_hash=args.config_hash, template=args.template, keep_source=args.keep_source)
    except ReportError as exc:
        print(f"pmtrec report: error: {exc}", file=sys.stderr)
        return 1
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
