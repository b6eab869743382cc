"""Publish a finished reference study into reports/reference/ and the README's Results section.

    .venv/bin/python -m benchmarks.reference.publish --workdir /work/ref

Copies from the workflow folder (nothing is computed that the workflow did not write, except the
headline table's seed intervals and the CPU-hours, both from its tables):

* ``reports/pmtrec_report.pdf`` -> ``reports/reference/pmtrec_report.pdf``;
* ``results/tables/*.csv`` -> ``reports/reference/tables/`` (the aggregated numeric tables);
* ``results/report/<section>/`` tables (``tab_*.csv``, booktabs ``tab_*.tex``), figures
  (``fig_*.svg``) and ``section.json`` (the section as the report shows it, with its readings:
  benchmarks.reference.findings reads it) -> ``reports/reference/sections/<section>/``;

and writes ``reports/reference/headline.csv`` (per dataset: PMTRec, the best tuned baseline, EW
and single, test NDCG@20 with a 95% t-interval over the reported seeds, the difference to PMTRec
with the comparisons table's interval and verdict), ``reports/reference/cpu_hours.csv`` (CPU-hours
per dataset and stage, from the jobs' Snakemake benchmark files), ``reports/reference/README.md``
(how the study was produced and how to check a rerun against it) and the README section between
``<!-- reference-results:start -->`` and ``<!-- reference-results:end -->``.
The run results themselves are in ``reports/reference/runs/`` (benchmarks.reference.snapshot).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from pmtrec.study.compare import confidence_bounds

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "reports" / "reference"
README = ROOT / "README.md"
START, END = "<!-- reference-results:start -->", "<!-- reference-results:end -->"
METRIC = "ndcg@20"
ROLES = ("PMTRec", "best tuned baseline", "EW", "single")


def headline(tables: Path, reference: str = "pmtrec", metric: str = METRIC) -> pd.DataFrame:
    """One row per dataset and role: the method, its test mean and interval, and against PMTRec."""
    summary = pd.read_csv(tables / "summary.csv")
    summary = summary[(summary["kind"] == "main") & (summary["split"] == "test") & (summary["metric"] == metric)]
    significance = pd.read_csv(tables / "significance.csv")
    comparisons = pd.read_csv(tables / "comparisons.csv")
    rows = []
    for dataset in dict.fromkeys(summary["dataset"]):
        best = significance[(significance["dataset"] == dataset) & (significance["metric"] == metric)]["baseline"]
        chosen = {"PMTRec": reference, "best tuned baseline": best.iloc[0] if len(best) else None,
                  "EW": "ew", "single": "single"}
        seen: dict[str, dict] = {}
        for role in ROLES:
            method = chosen[role]
            s = summary[(summary["dataset"] == dataset) & (summary["method"] == method)]
            if method is None or s.empty:
                continue
            if method in seen:  # EW or single is itself the best tuned baseline: one row, both roles
                seen[method]["role"] += f", {role}"
                continue
            r = s.iloc[0]
            low, high = (float(x) for x in confidence_bounds(r["mean"], r["std"], r["n"]))
            row = {"dataset": dataset, "role": role, "method": method, "metric": metric, "n_seeds": int(r["n"]),
                   "mean": float(r["mean"]), "ci_low": low, "ci_high": high}
            c = comparisons[(comparisons["dataset"] == dataset) & (comparisons["method"] == method)
                            & (comparisons["metric"] == metric)]
            if method != reference and len(c):
                c = c.iloc[0]
                row.update(diff=float(c["diff"]), diff_low=float(c["ci_low"]), diff_high=float(c["ci_high"]),
                           p_holm=float(c["p_holm"]), verdict=str(c["verdict"]))
            seen[method] = row
            rows.append(row)
    return pd.DataFrame(rows, columns=["dataset", "role", "method", "metric", "n_seeds", "mean", "ci_low", "ci_high",
                                       "diff", "diff_low", "diff_high", "p_holm", "verdict"])


def cpu_hours(tables: Path) -> pd.DataFrame:
    """CPU-hours per dataset and stage (kind), from efficiency.csv's benchmark columns."""
    eff = pd.read_csv(tables / "efficiency.csv")
    out = eff.groupby(["dataset", "kind"])["bench_cpu_time_s"].sum().div(3600).unstack("kind").fillna(0.0)
    out["total"] = out.sum(axis=1)
    out.loc["all"] = out.sum()
    return out.round(2).reset_index()


def _fmt(x: float, digits: int = 4) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def results_markdown(head: pd.DataFrame, claims: pd.DataFrame, cost: pd.DataFrame) -> str:
    """The README's Results section body, every number from the tables."""
    lines = ["Test NDCG@20 per dataset, mean over the reported seeds with a 95% "
             "t-interval; the difference to PMTRec with the comparisons table's interval and verdict "
             "(per-user paired test, Holm-corrected; docs/statistics.md). Generated by "
             "`python -m benchmarks.reference.publish` from reports/reference/tables.", "",
             "| dataset | method | NDCG@20 [95% CI] | PMTRec − method [95% CI] | verdict |", "|---|---|---|---|---|"]
    for r in head.to_dict("records"):
        label = r["method"] + (" (best tuned baseline)" if "best tuned baseline" in r["role"] else "")
        diff = "" if not np.isfinite(r.get("diff", np.nan)) else \
            f"{r['diff']:+.4f} [{r['diff_low']:+.4f}, {r['diff_high']:+.4f}]"
        lines.append(f"| {r['dataset']} | {label} | {_fmt(r['mean'])} [{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}] "
                     f"| {diff} | {r['verdict'] if isinstance(r['verdict'], str) else ''} |")
    lines += ["", "The paper's claims (reports/reference/tables/claims.csv):", ""]
    for claim, g in claims.groupby("claim", sort=True):
        sub = g[g["metric"].isna() | (g["metric"] == METRIC)]
        verdicts = "; ".join(f"{r['dataset']}: {r['verdict']}" for r in sub.to_dict("records"))
        lines.append(f"{int(claim)}. *{g['claim_text'].iloc[0]}*: {verdicts}.")
    total = cost[cost["dataset"] == "all"]["total"]
    if len(total):
        per = ", ".join(f"{r['dataset']} {r['total']:.1f}" for r in cost.to_dict("records") if r["dataset"] != "all")
        lines += ["", f"Its training jobs cost {float(total.iloc[0]):.1f} CPU-hours ({per}; reports/reference/cpu_hours.csv)."]
    return "\n".join(lines) + "\n"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def reference_readme(workdir: Path, out: Path, cost: pd.DataFrame, config: str = "config/reference.yaml") -> str:
    """reports/reference/README.md: what produced the study, what is here, and how to check a rerun."""
    commit = (workdir / "STUDY_COMMIT").read_text().strip() if (workdir / "STUDY_COMMIT").is_file() else "unknown"
    cfg = workdir / config
    digest = hashlib.sha256(cfg.read_bytes()).hexdigest()[:16] if cfg.is_file() else "unknown"
    eff = pd.read_csv(out / "tables" / "efficiency.csv")
    jobs = ", ".join(f"{n} {k}" for k, n in eff["kind"].value_counts().sort_index().items())
    devices = "; ".join(sorted(eff["device"].dropna().astype(str).unique()))
    parts = sorted((out / "runs").glob("part-*.tar.xz")) if (out / "runs").is_dir() else []
    size_mb = sum(p.stat().st_size for p in parts) / 2**20
    stages = [c for c in cost.columns if c not in ("dataset", "total")]
    table = ["| dataset | " + " | ".join(stages) + " | total |", "|---|" + "---|" * (len(stages) + 1)]
    table += [f"| {r['dataset']} | " + " | ".join(f"{r[c]:.2f}" for c in stages) + f" | {r['total']:.2f} |"
              for r in cost.to_dict("records")]
    lines = [
        "# The reference study", "",
        "Generated by `python -m benchmarks.reference.publish` from the study's workflow folder; how the "
        "study was run, in sittings, is in [benchmarks/reference/README.md](../../benchmarks/reference/README.md), "
        "its protocol in [docs/protocol.md](../../docs/protocol.md) (section 7), what it found in "
        "[docs/findings.md](../../docs/findings.md).", "",
        f"- Code: commit `{commit}` (every sitting ran this commit's `pmtrec` and workflow).",
        f"- Config: [`{config}`](../../{config}) (SHA-256 `{digest}...` of the copy the study ran).",
        f"- Machine: training jobs on `{devices}`, two at a time; the CPU at publish time: {_cpu_model()}, "
        f"{os.cpu_count()} cores.",
        f"- Training jobs: {len(eff)} ({jobs}).", "",
        "CPU-hours per dataset and stage (the jobs' Snakemake benchmark files, `cpu_hours.csv`):", "", *table, "",
        "## What is here", "",
        "| path | what |", "|---|---|",
        "| `pmtrec_report.pdf` | the report, rendered by the workflow |",
        "| `tables/` | the aggregated numeric tables (`pmtrec.aggregate`; columns in docs/report.md) |",
        "| `sections/<section>/` | each report section's tables (`tab_*.csv`, booktabs `tab_*.tex`), figures (`fig_*.svg`) and `section.json` (its tables and readings as the report shows them) |",
        "| `headline.csv` | per dataset: PMTRec, the best tuned baseline, EW and single (README, Results) |",
        "| `cpu_hours.csv` | the table above |",
        f"| `runs/part-*.tar.xz` | every finished job's result JSON and per-user metrics, with its Snakemake benchmark "
        f"file ({len(parts)} parts, {size_mb:.1f} MB; `part-*.txt` list them). Left out: embedding tables, "
        "checkpoints, logs, prepared data (rebuilt from the mirror) |", "",
        "## Checking a rerun against it", "",
        "In a fresh folder outside the repository, run the study and compare its tables with these:", "",
        "```",
        f"snakemake --cores 2 all --configfile {config}      # or: bash benchmarks/reference/run.sh DIR",
        "pmtrec compare reports/reference/tables DIR/results/tables",
        "```", "",
        "`pmtrec compare` checks every test NDCG@20 and Recall@20 mean of `summary.csv` (main runs, ablations, "
        "sensitivity and tuning; `--metrics`, `--splits`, `--kinds` choose) against the reference mean's 95% "
        "t-interval over seeds, and exits 0 when all are inside, 3 otherwise, listing the rows that are not. "
        "On this kind of CPU a rerun of a run reproduces its metrics exactly "
        "(`python -m benchmarks.reference.rerun_check`); on other hardware expect differences within the intervals.",
    ]
    return "\n".join(lines) + "\n"


def copy_artefacts(workdir: Path, out: Path) -> None:
    pdf = workdir / "reports" / "pmtrec_report.pdf"
    if not pdf.is_file():
        raise SystemExit(f"publish: {pdf}: no report (run the workflow's `all` target first)")
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy2(pdf, out / "pmtrec_report.pdf")
    for sub in ("tables", "sections"):
        if (out / sub).exists():
            shutil.rmtree(out / sub)
    shutil.copytree(workdir / "results" / "tables", out / "tables", ignore=shutil.ignore_patterns("*.tmp"))
    for section in sorted((workdir / "results" / "report").iterdir()):
        files = [f for f in section.iterdir() if re.match(r"(tab_.*\.(csv|tex)|fig_.*\.svg|section\.json)$", f.name)]
        if files:
            (out / "sections" / section.name).mkdir(parents=True, exist_ok=True)
            for f in files:
                shutil.copy2(f, out / "sections" / section.name / f.name)


def write_readme(body: str, readme: Path = README) -> None:
    text = readme.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"publish: {readme}: no {START} ... {END} markers in the Results section")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(head + START + "\n" + body + END + tail)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", type=Path, required=True, help="the finished study's workflow folder")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--readme", type=Path, default=README)
    args = p.parse_args(argv)
    copy_artefacts(args.workdir, args.out)
    tables = args.out / "tables"
    head, cost = headline(tables), cpu_hours(tables)
    head.to_csv(args.out / "headline.csv", index=False)
    cost.to_csv(args.out / "cpu_hours.csv", index=False)
    (args.out / "README.md").write_text(reference_readme(args.workdir, args.out, cost))
    write_readme(results_markdown(head, pd.read_csv(tables / "claims.csv"), cost), args.readme)
    print(f"publish: {args.out} and {args.readme} written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
