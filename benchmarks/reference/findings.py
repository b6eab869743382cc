"""docs/findings.md from the published reference study: every number from its tables and sections.

    .venv/bin/python -m benchmarks.reference.findings [--reference reports/reference]
        [--projection DIR/study_cost_totals.csv --projection-command "..."] [--out docs/findings.md]

Reads what ``benchmarks.reference.publish`` wrote into ``--reference``: the tables (``tables/``),
the headline (``headline.csv``, ``cpu_hours.csv``) and the report's sections (``sections/<section>/
section.json``: each table as the report shows it, with the reading the notebook generated), and
writes the part of ``--out`` between ``<!-- findings:start -->`` and ``<!-- findings:end -->``:

* the headline and the claims' verdicts (publish's README section, the same text);
* the paper's claims, the controls and the per-user weights: the report's tables and readings
  (sections 00_claims and 04_personalization), not recomputed: the report owns them;
* negative transfer (computed here, from ``runs.csv`` and ``groups.csv``): per dataset, each
  multi-task method of the headline and the best multi-task method by validation NDCG@20 against
  ``single``, the difference paired by seed (validation and test NDCG@20, mean and 95% t-interval
  over the seeds both ran), and per user-activity group for the best of them;
* what the study cost (``cpu_hours.csv``) and, with ``--projection``, the full-budget study's
  projected cost (``python -m benchmarks.study_cost ... --out DIR``: its ``study_cost_totals.csv``;
  ``--projection-command`` is printed as the command that produced it).

Text outside the markers (the hand-written discussion) is kept.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from benchmarks.reference import publish
from pmtrec.report.personalization import group_label
from pmtrec.study.statistics import CONTROLS, baseline_models

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "reports" / "reference"
OUT = ROOT / "docs" / "findings.md"
START, END = "<!-- findings:start -->", "<!-- findings:end -->"
METRIC = "ndcg@20"
# (heading, section folder, item-id prefixes): the report's items that findings.md repeats
REPORT_ITEMS = (
    ("The paper's claims", "00_claims", ("claim-",)),
    ("The controls: what PMTRec's gain is made of", "00_claims", ("controls",)),
    ("Per-user weights", "04_personalization", ("row-weights-", "headroom-")),
)


class FindingsError(SystemExit):
    def __init__(self, message: str):
        super().__init__(f"findings: {message}")


def _read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise FindingsError(f"{path}: file not found (run benchmarks.reference.publish first)")
    return pd.read_csv(path)


def _cell(c) -> str:
    text = (c if isinstance(c, str) else c["t"] + c.get("sup", "")).replace("|", "\\|")
    return f"**{text}**" if isinstance(c, dict) and c.get("b") else text


def table_markdown(table: dict) -> str:
    """A report table (Table.to_json) as a Markdown table, bold cells kept."""
    lines = ["| " + " | ".join(table["columns"]) + " |", "|" + "---|" * len(table["columns"])]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in table["rows"]]
    return "\n".join(lines)


def report_items(sections: Path, folder: str, prefixes: tuple[str, ...], links: Path) -> list[str]:
    """The Markdown of a section's items whose id starts with one of ``prefixes``: caption, table
    (figures: a link to the SVG, relative to the folder ``links``), note and reading; texts between
    them are kept."""
    path = sections / folder / "section.json"
    if not path.is_file():
        raise FindingsError(f"{path}: file not found (publish copies each report section's section.json)")
    items = json.loads(path.read_text())["items"]
    out, keep = [], False
    for item in items:
        if item["kind"] == "text":
            if keep and item["text"]:
                out.append(item["text"])
            continue
        keep = item["id"].startswith(prefixes)
        if not keep:
            continue
        if item["kind"] == "table":
            out.append(f"*{item['caption']}*\n\n{table_markdown(item['table'])}")
            if item["table"].get("note"):
                out.append(f"<sub>{item['table']['note']}</sub>")
        else:
            rel = Path(os.path.relpath(path.parent / item["file"], links)).as_posix()
            out.append(f"*{item['caption']}* ([figure]({rel}))")
        if item.get("reading"):
            out.append(item["reading"])
    if not out:
        raise FindingsError(f"{path}: no item whose id starts with {', '.join(prefixes)}")
    return out


def _interval(d: np.ndarray) -> tuple[float, float, float]:
    mean = float(np.mean(d))
    if len(d) < 2:
        return mean, float("nan"), float("nan")
    half = float(stats.t.ppf(0.975, len(d) - 1) * np.std(d, ddof=1) / np.sqrt(len(d)))
    return mean, mean - half, mean + half


def _multi_task(methods) -> list[str]:
    """Main methods trained on every task: not single, the catalogue's models or the controls."""
    return [m for m in methods if m != "single" and m not in baseline_models() and m not in CONTROLS]


def _main_setting(df: pd.DataFrame) -> pd.Series:
    """Rows of the main setting (variant empty; read back from CSV as NaN)."""
    return df["variant"].isna() | (df["variant"].astype(str) == "")


def negative_transfer(runs: pd.DataFrame, headline: pd.DataFrame, metric: str = METRIC) -> pd.DataFrame:
    """Per dataset: the headline's multi-task methods and the best multi-task method by mean
    validation ``metric``, each minus ``single``, paired by seed (validation and test)."""
    main = runs[(runs["kind"] == "main") & _main_setting(runs) & (runs["metric"] == metric)]
    rows = []
    for dataset, d in main.groupby("dataset", sort=False):
        if "single" not in set(d["method"]):
            continue
        valid = d[d["split"] == "valid"].groupby("method")["value"].mean()
        candidates = _multi_task(valid.index)
        if not candidates:
            continue
        best = max(candidates, key=lambda m: valid[m])
        shown = [m for m in headline.loc[headline["dataset"] == dataset, "method"] if m in candidates]
        for method in dict.fromkeys(shown + [best]):
            row = {"dataset": dataset, "method": method, "best_by_validation": method == best}
            for split in ("valid", "test"):
                s = d[d["split"] == split].pivot_table(index="seed", columns="method", values="value")
                pair = s[[method, "single"]].dropna()
                mean, low, high = _interval((pair[method] - pair["single"]).to_numpy())
                row |= {f"{split}_diff": mean, f"{split}_low": low, f"{split}_high": high, "n_seeds": len(pair)}
            rows.append(row)
    return pd.DataFrame(rows, columns=["dataset", "method", "best_by_validation", "valid_diff", "valid_low",
                                       "valid_high", "test_diff", "test_low", "test_high", "n_seeds"])


def group_transfer(groups: pd.DataFrame, dataset: str, method: str, metric: str = METRIC) -> pd.DataFrame:
    """Test ``metric`` of ``method`` minus ``single`` per user-activity group, paired by seed."""
    g = groups[(groups["kind"] == "main") & (groups["dataset"] == dataset) & (groups["metric"] == metric)
               & _main_setting(groups) & groups["method"].isin([method, "single"])]
    rows = []
    for group, x in g.groupby("group", sort=False):
        s = x.pivot_table(index="seed", columns="method", values="value")
        if method not in s or "single" not in s:
            continue
        pair = s[[method, "single"]].dropna()
        mean, low, high = _interval((pair[method] - pair["single"]).to_numpy())
        rows.append({"group": str(group), "n_users": int(x["n_users"].iloc[0]), "diff": mean, "low": low,
                     "high": high, "n_seeds": len(pair)})
    out = pd.DataFrame(rows, columns=["group", "n_users", "diff", "low", "high", "n_seeds"])
    return out.assign(_g=pd.to_numeric(out["group"], errors="coerce")).sort_values("_g").drop(columns="_g")


def _ci(mean: float, low: float, high: float) -> str:
    return f"{mean:+.4f}" + ("" if not np.isfinite(low) else f" [{low:+.4f}, {high:+.4f}]")


def _side(low: float, high: float) -> str:
    if not np.isfinite(low):
        return "one seed: no interval"
    return "single better" if high < 0 else "multi-task better" if low > 0 else "no difference shown"


def transfer_markdown(nt: pd.DataFrame, groups: pd.DataFrame) -> list[str]:
    out = ["Each multi-task method minus `single` (the main task alone), NDCG@20, paired by seed: mean "
           "difference and 95% t-interval over the seeds both ran (descriptive, not a claim test; the "
           "per-user paired test of PMTRec against `single` is in the comparisons table). Negative "
           "transfer is a multi-task method below `single`.", "",
           "| dataset | method | validation | test | test reads | seeds |", "|---|---|---|---|---|---|"]
    for r in nt.to_dict("records"):
        name = r["method"] + (" (best by validation)" if r["best_by_validation"] else "")
        out.append(f"| {r['dataset']} | {name} | {_ci(r['valid_diff'], r['valid_low'], r['valid_high'])} | "
                   f"{_ci(r['test_diff'], r['test_low'], r['test_high'])} | {_side(r['test_low'], r['test_high'])} "
                   f"| {r['n_seeds']} |")
    text = []
    for dataset, d in nt.groupby("dataset", sort=False):
        below = d[d["test_high"] < 0]["method"].tolist()
        above = d[d["test_low"] > 0]["method"].tolist()
        best = d[d["best_by_validation"]].iloc[0]
        text.append(f"On {dataset}, " + (f"`single` is above {', '.join(below)}" if below else
                                         "no multi-task method shown is below `single`")
                    + (f"; above `single`: {', '.join(above)}" if above else "")
                    + f" (the best multi-task method by validation, {best['method']}: "
                    f"{_ci(best['test_diff'], best['test_low'], best['test_high'])} on test).")
    out += ["", " ".join(text)]
    for dataset, d in nt.groupby("dataset", sort=False):
        best = d[d["best_by_validation"]].iloc[0]["method"]
        g = group_transfer(groups, dataset, best)
        if g.empty:
            continue
        out += ["", f"Per user-activity group on {dataset} (test NDCG@20, {best} minus `single`; groups "
                    "numbered as in the report):", "", "| group | users | difference [95% CI] | reads |",
                "|---|---|---|---|"]
        out += [f"| {group_label(r['group'], len(g)).replace(chr(10), ' ')} | {r['n_users']} | "
                f"{_ci(r['diff'], r['low'], r['high'])} | {_side(r['low'], r['high'])} |" for r in g.to_dict("records")]
    return out


def cost_markdown(cost: pd.DataFrame, projection: pd.DataFrame | None, command: str | None) -> list[str]:
    stages = [c for c in cost.columns if c not in ("dataset", "total")]
    out = ["CPU-hours of the study's training jobs per dataset and stage (their Snakemake benchmark files; "
           "reports/reference/cpu_hours.csv):", "",
           "| dataset | " + " | ".join(stages) + " | total |", "|---|" + "---|" * (len(stages) + 1)]
    out += [f"| {r['dataset']} | " + " | ".join(f"{r[c]:.2f}" for c in stages) + f" | {r['total']:.2f} |"
            for r in cost.to_dict("records")]
    if projection is not None:
        total = projection[projection["stage"] == "total"]
        parallel = (float(total["cpu_h"].iloc[0] / total["wall_h"].iloc[0])
                    if len(total) and float(total["wall_h"].iloc[0]) > 0 else float("nan"))
        out += ["", "The full-budget study (`config/paper.yaml`) projected from these measured per-job costs"
                + (f" (`{command}`)" if command else "") + f", at {parallel:.0f} one-thread jobs at once:", "",
                "| stage | jobs | CPU-hours | wall-clock hours |", "|---|---|---|---|"]
        out += [f"| {r['stage']} | {int(r['jobs'])} | {r['cpu_h']:.1f} | {r['wall_h']:.1f} |"
                for r in projection.to_dict("records")]
    return out


def generate(reference: Path, projection: Path | None = None, command: str | None = None,
             links: Path = OUT.parent) -> str:
    """findings.md's generated block; figure links relative to ``links`` (the folder of the doc)."""
    tables, sections = reference / "tables", reference / "sections"
    head = _read_csv(reference / "headline.csv")
    cost = _read_csv(reference / "cpu_hours.csv")
    claims = _read_csv(tables / "claims.csv")
    parts = ["Generated by `python -m benchmarks.reference.findings` from reports/reference/ (its tables and the "
             "report's sections); do not edit between the markers.", "", "## Headline", "",
             publish.results_markdown(head, claims, cost).rstrip()]
    for heading, folder, prefixes in REPORT_ITEMS:
        parts += ["", f"## {heading}", "", "\n\n".join(report_items(sections, folder, prefixes, links))]
    nt = negative_transfer(_read_csv(tables / "runs.csv"), head)
    parts += ["", "## Negative transfer", ""]
    parts += transfer_markdown(nt, _read_csv(tables / "groups.csv")) if len(nt) else \
        ["No dataset ran both `single` and a multi-task method."]
    parts += ["", "## What it cost", ""]
    parts += cost_markdown(cost, _read_csv(projection) if projection else None, command)
    return "\n".join(parts) + "\n"


def write(body: str, out: Path = OUT) -> None:
    """Replace the generated block of ``out`` (a new file: a title, then the block)."""
    text = out.read_text() if out.is_file() else "# What the reference study found\n\n" + START + "\n" + END + "\n"
    if START not in text or END not in text:
        raise FindingsError(f"{out}: no {START} ... {END} markers")
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    tmp = out.with_suffix(".tmp")
    tmp.write_text(head + START + "\n" + body + END + tail)
    tmp.replace(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reference", type=Path, default=REFERENCE, help="the published study (default reports/reference)")
    p.add_argument("--projection", type=Path, help="study_cost_totals.csv of the full-budget projection")
    p.add_argument("--projection-command", help="the benchmarks.study_cost command that wrote --projection")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    write(generate(args.reference, args.projection, args.projection_command, args.out.parent), args.out)
    print(f"findings: {args.out} written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
