"""The Claims section: the verdict on each claim of the paper, per dataset, from claims.csv.

Nothing here decides a verdict: :mod:`pmtrec.aggregate` (``claims``, from the comparisons, row
weights and efficiency tables; rules in docs/statistics.md) did. This module lays each claim's
rows out as a table (verdict, effect, 95% interval, Holm-corrected p, note) and writes one
sentence of reading from the same rows.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from pmtrec.report import style
from pmtrec.report.data import ReportError
from pmtrec.report.tables import Cell, Table

TOO_FEW = "inconclusive (too few seeds)"
VERDICT_ORDER = ("supported", "contradicted", "equivalent", "inconclusive", TOO_FEW)


def _nan(x: Any) -> bool:
    try:
        return x is None or (isinstance(x, str) and not x) or math.isnan(float(x))
    except (TypeError, ValueError):
        return False


def fmt_p(p: Any) -> str:
    """A corrected p-value cell: '0.012', '<0.001', or '–' (not tested)."""
    if _nan(p):
        return "–"
    return "<0.001" if float(p) < 0.001 else f"{float(p):.3f}"


def fmt_effect(diff: Any, rel_pct: Any) -> str:
    """'+0.0123 (+4.5%)'; the difference alone without a relative effect."""
    if _nan(diff):
        return "–"
    text = f"{float(diff):+.4f}"
    return text if _nan(rel_pct) else f"{text} ({float(rel_pct):+.1f}%)"


def fmt_ci(low: Any, high: Any) -> str:
    return "–" if _nan(low) or _nan(high) else f"[{float(low):+.4f}, {float(high):+.4f}]"


def _against(row: dict) -> str:
    a = row.get("against")
    if _nan(a):
        return "–"
    a = str(a)
    if row["claim"] == 4:
        return f"{style.label(a)} (epoch time)"
    if row["claim"] == 3:
        return a
    return style.label(a)


def _effect(row: dict) -> str:
    if row["claim"] == 4:  # the epoch-time ratio
        return "–" if _nan(row.get("diff")) else f"{float(row['diff']):.2f}× EW"
    if row["claim"] == 3:  # auxiliary row weight, least - most active users
        return "–" if _nan(row.get("diff")) else f"{float(row['diff']):+.3f}"
    return fmt_effect(row.get("diff"), row.get("rel_pct"))


def claim_rows(claims: pd.DataFrame, claim: int) -> pd.DataFrame:
    return claims[claims["claim"] == claim]


def claim_table(claims: pd.DataFrame, claim: int) -> tuple[Table, str]:
    """(table, reading) of one claim: one row per dataset (and metric for claims 1-2)."""
    rows = claim_rows(claims, claim)
    if rows.empty:
        raise ReportError(f"claims.csv: no rows for claim {claim}")
    with_metric = rows["metric"].notna().any()
    cols = ["Dataset"] + (["Metric"] if with_metric else []) + ["Verdict", "Decided by", "Effect", "95% CI",
                                                                 "p (Holm)", "Note"]
    table = Table(cols, font_size=7.5)
    for r in rows.to_dict("records"):
        cells = [Cell(str(r["dataset"]))]
        if with_metric:
            cells.append(Cell("–" if _nan(r["metric"]) else style.metric_label(str(r["metric"]))))
        cells += [Cell(str(r["verdict"]), bold=r["verdict"] in ("supported", "contradicted")), Cell(_against(r)),
                  Cell(_effect(r)), Cell(fmt_ci(r.get("ci_low"), r.get("ci_high"))), Cell(fmt_p(r.get("p_holm"))),
                  Cell("" if _nan(r.get("note")) else str(r["note"]))]
        table.add(cells)
    table.note = NOTES[claim]
    keep = ["dataset", "metric", "verdict", "against", "diff", "ci_low", "ci_high", "rel_pct", "p_holm", "p_tost",
            "n_seeds", "n_compared", "n_supported", "n_contradicted", "n_equivalent", "note"]
    table.data = rows[[c for c in keep if c in rows.columns]].reset_index(drop=True)
    return table, claim_reading(rows, claim)


NOTES = {
    1: ("PMTRec against every existing multi-task method (trained on all tasks; not Single, MostPop, the "
        "controls or PMTRec's variants). Decided by: the largest loss if any is significant, else the strongest "
        "baseline (highest mean). Effect: mean over seeds of PMTRec − it, relative to it in %; 95% CI over "
        "seeds; p: paired sign-flip test over users, Holm-corrected over the whole comparisons table."),
    2: ("The full PMTRec against each ablation variant (a module switched off). Effect, CI and p as for "
        "claim 1; equivalent if any variant is equivalent within the margin (that module adds nothing "
        "measurable)."),
    3: ("Effect: PMTRec's mean auxiliary row weight for the least active users minus the most active, last "
        "epoch, averaged over seeds. Supported when the weight differs across activity groups and is higher "
        "for the least active; contradicted when it does not differ or is lower."),
    4: "Effect: PMTRec's median epoch time over EW's (main runs); supported at or below the threshold.",
}


def claim_reading(rows: pd.DataFrame, claim: int) -> str:
    """One sentence from the rows: how many (dataset[, metric]) cases got which verdict, and why
    a case was not tested."""
    counts = rows["verdict"].value_counts()
    unit = "dataset × metric cases" if rows["metric"].notna().any() else "datasets"
    parts = [f"{int(counts[v])} {v}" for v in VERDICT_ORDER if v in counts]
    text = f"Claim {claim} ({rows['claim_text'].iloc[0]}): of {len(rows)} {unit}, {', '.join(parts)}."
    too_few = rows[rows["verdict"] == TOO_FEW]
    if len(too_few):
        note = str(too_few["note"].dropna().iloc[0]) if too_few["note"].notna().any() else ""
        text += (f" No p-value is given where fewer seeds ran than the test needs ({note}): the interval over "
                 "seeds is still shown.")
    return text


def overview(claims: pd.DataFrame) -> str:
    """The section's opening sentence: every claim's verdicts over the datasets."""
    if claims.empty:
        return "No claim could be judged: the claims table is empty."
    out = []
    for claim, rows in claims.groupby("claim", sort=True):
        v = rows["verdict"].value_counts()
        out.append(f"claim {int(claim)}: " + ", ".join(f"{int(v[k])} {k}" for k in VERDICT_ORDER if k in v))
    return "Verdicts per claim (over datasets and metrics) — " + "; ".join(out) + "."


# What each control's tie with PMTRec would mean (docs/method.md, "Controls").
CONTROL_MEANING = {
    "static-schedule": ("EW with PMTRec's focus schedule as one weight for every row",
                        "nothing beyond the schedule measurably matters"),
    "pmtrec-shuffled": ("PMTRec with each step's row weights permuted across rows",
                        "which row gets which weights does not measurably matter"),
}


def controls_table(comparisons: pd.DataFrame, metric: str = "ndcg@20") -> tuple[Table, str] | None:
    """(table, reading) of PMTRec against the controls in the comparisons table (None without
    controls): verdict, effect, interval and corrected p per dataset, and what the verdict means."""
    c = comparisons[comparisons["method"].isin(list(CONTROL_MEANING)) & (comparisons["metric"] == metric)]
    if c.empty:
        return None
    table = Table(["Dataset", "Control", "Verdict", "Effect", "95% CI", "p (Holm)", "Note"], font_size=7.5)
    parts = []
    for r in c.to_dict("records"):
        what, tie = CONTROL_MEANING[r["method"]]
        table.add([Cell(str(r["dataset"])), Cell(style.label(r["method"])),
                   Cell(str(r["verdict"]), bold=r["verdict"] in ("supported", "contradicted")),
                   Cell(fmt_effect(r.get("diff"), r.get("rel_pct"))), Cell(fmt_ci(r.get("ci_low"), r.get("ci_high"))),
                   Cell(fmt_p(r.get("p_holm"))), Cell("" if _nan(r.get("note")) else str(r["note"]))])
        verdict = str(r["verdict"])
        if verdict == "equivalent":
            meaning = f"equivalent to PMTRec within the margin: {tie}"
        elif verdict == "supported":
            meaning = "PMTRec is better: what the control removes matters"
        elif verdict == "contradicted":
            meaning = "the control is better than PMTRec"
        else:
            meaning = "no verdict (" + ("too few seeds" if verdict.startswith("inconclusive (") else "undecided") + ")"
        parts.append(f"{style.label(r['method'])} on {r['dataset']}: {meaning}")
    table.note = ("PMTRec against each control (" + "; ".join(f"{style.label(k)}: {v[0]}" for k, v in
                  CONTROL_MEANING.items()) + f"), test {style.metric_label(metric)}; effect, CI and p as for claim 1.")
    table.data = c.reset_index(drop=True)
    return table, "Controls — " + "; ".join(parts) + "."
