"""What the verdicts rest on: the tuning protocol each method had, and whether the runs converged.

From ``tuning_protocol.csv`` and ``convergence.csv`` (pmtrec.aggregate). The Claims section lists
the budget, tuning seeds and search spaces (issue 18: "the report lists them and the budget") and
discloses development-time tuning; the main comparison shows the share of runs the epoch cap
stopped, flagging a method above 10% (it may be undertrained, so its comparison is weak).
"""

from __future__ import annotations

import json

import pandas as pd

from pmtrec.report import style
from pmtrec.report.tables import Cell, Table, fmt_pct

KNOB_LABELS = {"train.lr": "lr", "train.l2": "l2", "model.init_std": "init std", "model.dim": "dim"}


def _fmt_value(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, list):
        return "[" + ", ".join(_fmt_value(x) for x in v) + "]"
    return str(v)


def _values(text: str) -> str:
    vals = json.loads(text)
    if isinstance(vals, dict) and {"low", "high"} <= set(vals):  # a continuous range of the catalogue
        return f"[{_fmt_value(vals['low'])}, {_fmt_value(vals['high'])}]" + (" (log)" if vals.get("log") else "")
    return "{" + ", ".join(_fmt_value(v) for v in vals) + "}" if isinstance(vals, list) else _fmt_value(vals)


def _blank(tp: pd.DataFrame) -> pd.DataFrame:
    """The study-wide rows have dataset and method "" (read back from CSV: NaN)."""
    return tp.assign(dataset=tp["dataset"].fillna("").astype(str), method=tp["method"].fillna("").astype(str))


def _knobs(rows: pd.DataFrame, prefix: str) -> str:
    parts = []
    for item, value in zip(rows["item"], rows["value"]):
        if item.startswith(prefix):
            knob = item[len(prefix):]
            parts.append(f"{KNOB_LABELS.get(knob, knob)} ∈ {_values(value)}")
    return "; ".join(parts) or "–"


def protocol_table(tp: pd.DataFrame) -> tuple[Table, str]:
    """(table, reading): one row per tuned method: settings run per dataset, the tuning seeds and
    the search space (declared in the config when the table has it, else the values run)."""
    tp = _blank(tp)
    runs = tp[tp["method"] != ""]
    declared = runs["item"].str.startswith("space:").any()
    table = Table(["Method", "Settings run", "Tuning seeds", "Search space" if declared else "Values run"],
                  align=["left", "right", "right", "left"], font_size=7.5)
    methods = list(dict.fromkeys(runs.loc[runs["item"] == "settings", "method"]))
    for m in sorted(methods, key=style.method_key):
        r = runs[runs["method"] == m]
        counts = r[r["item"] == "settings"]
        per = {d: int(json.loads(v)) for d, v in zip(counts["dataset"], counts["value"])}
        settings = (str(next(iter(per.values()))) if len(set(per.values())) == 1
                    else ", ".join(f"{d} {n}" for d, n in per.items()))
        seeds = r.loc[r["item"] == "seeds", "value"]
        space = _knobs(r[r["dataset"] == ""], "space:") if declared else _knobs(r.drop_duplicates("item"), "run:")
        table.add([Cell(style.label(m)), Cell(settings), Cell(_values(seeds.iloc[0]) if len(seeds) else "–"),
                   Cell(space)])
    table.note = ("Settings run: tuning settings per dataset (one run per setting and tuning seed); the setting "
                  "with the best mean validation metric is used by every reported run.")
    table.data = tp.reset_index(drop=True)
    return table, protocol_reading(tp)


def protocol_reading(tp: pd.DataFrame) -> str:
    """The budget, sampler, seeds and split protocol, and every disclosed development-time tuning."""
    tp = _blank(tp)
    glob = {i: json.loads(v) for i, v in zip(tp.loc[tp["method"] == "", "item"], tp.loc[tp["method"] == "", "value"])
            if i != "development"}
    counts = {json.loads(v) for v in tp.loc[tp["item"] == "settings", "value"]}
    if "budget" in glob:
        text = (f"Every trained method had a budget of {glob['budget']} tuning settings per dataset "
                f"({glob.get('sampler', '?')} sampling, seed {glob.get('sampler_seed', '?')}"
                + (", the same shared lr / l2 draws for every method" if glob.get("draws") == "shared" else "")
                + "), each run on the "
                f"tuning seeds {_values(json.dumps(glob.get('seeds', [])))}, held out from every reported seed; "
                f"selection on validation {style.metric_label(str(glob.get('metric', 'ndcg@20')))}. "
                + ("Each reported seed has its own data split." if glob.get("split_seed") == "run"
                   else "Every run uses one fixed data split."))
    elif counts:
        text = ("Settings run per method and dataset: " + ", ".join(str(c) for c in sorted(counts))
                + " (no declared protocol in these results: the values run are listed).")
    else:
        text = "No tuning runs in this study: every method ran its default setting."
    if len(counts) > 1:
        text += " The methods did not all get the same number of settings."
    dev = tp[tp["item"] == "development"]
    for d, m, note in zip(dev["dataset"], dev["method"], dev["value"]):
        text += f" Disclosed extra tuning ({style.label(m)} on {d}): {json.loads(note)}"
    return text


def convergence_table(conv: pd.DataFrame, dataset: str, kind: str = "main") -> tuple[Table, str]:
    """(table, reading) of one dataset's runs of ``kind``: runs, share stopped by the epoch cap,
    share whose best epoch was the last; a flagged method (cap share above 10%) in bold."""
    c = conv[(conv["dataset"] == dataset) & (conv["kind"] == kind)]
    table = Table(["Method", "Runs", "Stopped by the cap", "Best epoch = last"], font_size=7.5)
    for r in sorted(c.to_dict("records"), key=lambda r: style.method_key(r["method"])):
        flag = bool(r["flagged"])
        table.add([Cell(style.label(r["method"]), bold=flag), Cell(str(int(r["runs"]))),
                   Cell(fmt_pct(r["cap_share"], 0, sign=False), bold=flag),
                   Cell(fmt_pct(r["best_at_last_share"], 0, sign=False))])
    table.note = ("Stopped by the cap: runs whose patience never ran out before train.epochs; bold above 10% "
                  "(the method may be undertrained, so comparisons with it are weak).")
    table.data = c.reset_index(drop=True)
    return table, convergence_reading(conv, dataset)


def convergence_reading(conv: pd.DataFrame, dataset: str | None = None) -> str:
    """Which methods the epoch cap stopped in more than 10% of their main runs (per dataset), and
    how many other stages were flagged."""
    c = conv if dataset is None else conv[conv["dataset"] == dataset]
    if c.empty:
        return "No trained runs."
    flagged = c[c["flagged"].astype(bool)]
    main = flagged[flagged["kind"] == "main"]
    if flagged.empty:
        return (f"The epoch cap stopped at most {fmt_pct(c['cap_share'].max(), 0, sign=False)} of any method's runs "
                "(no method above the 10% flag).")
    parts = [", ".join(f"{style.label(m)} ({fmt_pct(s, 0, sign=False)})" for m, s in zip(g["method"], g["cap_share"]))
             + f" on {d}" for d, g in main.groupby("dataset", sort=False)]
    text = ("The epoch cap stopped more than 10% of the main runs of: " + "; ".join(parts) + ": comparisons with "
            "them are weak, a higher train.epochs would be fairer." if parts else "No method's main runs were flagged.")
    others = flagged[flagged["kind"] != "main"]
    if len(others):
        text += (f" Also flagged: {len(others)} tuning/ablation/sensitivity group(s) "
                 f"({', '.join(sorted(set(others['kind'])))}).")
    return text
