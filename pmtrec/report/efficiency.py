"""Efficiency: time per epoch and peak memory of each method relative to EW."""

from __future__ import annotations

import datetime
import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd

from pmtrec.report import style
from pmtrec.report.data import ReportError
from pmtrec.report.tables import Cell, Table, fmt_num, fmt_sig

REF = style.REFERENCE
BASE = "ew"


def per_method(eff: pd.DataFrame, dataset: str, kind: str = "main") -> tuple[pd.DataFrame, str]:
    """Mean over seeds of each method's costs, with ratios to EW (or to the first trained method)."""
    e = eff[(eff["dataset"] == dataset) & (eff["kind"] == kind)]
    if e.empty:
        raise ReportError(f"efficiency.csv: no {kind} runs on dataset '{dataset}'")
    cols = ["epoch_time_s", "wall_time_s", "host_peak_rss_mb", "device_peak_mb", "bench_s", "bench_max_rss_mb",
            "epochs_run"]
    agg = e.groupby("method")[cols].mean(numeric_only=True)
    agg = agg.reindex(style.order_methods(agg.index))
    trained = agg[agg["epochs_run"] > 0]
    base = BASE if BASE in trained.index else (trained.index[0] if len(trained) else None)
    agg["memory_mb"] = agg["device_peak_mb"] if agg["device_peak_mb"].notna().any() else agg["host_peak_rss_mb"]
    for col in ("epoch_time_s", "memory_mb", "host_peak_rss_mb", "wall_time_s"):
        ref = agg.loc[base, col] if base is not None else np.nan
        agg[f"{col}_x"] = np.where(agg["epochs_run"] > 0, agg[col] / ref, np.nan) if ref else np.nan
    return agg.reset_index(), base or ""


def memory_kind(eff: pd.DataFrame) -> str:
    return "device" if eff["device_peak_mb"].notna().any() else "host"


def devices(eff: pd.DataFrame, dataset: str, kind: str = "main") -> str:
    d = eff[(eff["dataset"] == dataset) & (eff["kind"] == kind)]["device"].dropna().astype(str).unique()
    return "; ".join(d[:2]) + (f" (+{len(d) - 2} more)" if len(d) > 2 else "") if len(d) else "unknown"


def _ratio(v, trained: bool) -> str:
    return f"{v:.2f}" if trained and not pd.isna(v) else "–"


def cost_table(agg: pd.DataFrame, base: str, mem: str) -> Table:
    mem_name = "Peak GPU mem. (MB)" if mem == "device" else "Peak RSS (MB)"
    bx = f"× {style.label(base)}"
    bench = agg["bench_s"].notna().any()
    cols = ["Method", "Epochs", "Time/epoch (s)", bx, mem_name, bx, "Wall time (s)"]
    if bench:
        cols += ["Job time (s)†", "Job max RSS (MB)†"]
    table = Table(cols, font_size=7.5)
    for _, r in agg.iterrows():
        m = r["method"]
        trained = r["epochs_run"] > 0
        cells = [Cell(style.label(m), bold=m == REF), Cell(f"{r['epochs_run']:.1f}".rstrip("0").rstrip(".")),
                 Cell(fmt_sig(r["epoch_time_s"]) if trained else "–"),
                 Cell(_ratio(r["epoch_time_s_x"], trained), bold=m == REF),
                 Cell(fmt_sig(r["memory_mb"], 4)), Cell(_ratio(r["memory_mb_x"], trained), bold=m == REF),
                 Cell(fmt_sig(r["wall_time_s"]))]
        if bench:
            cells += [Cell(fmt_sig(r["bench_s"])), Cell(fmt_sig(r["bench_max_rss_mb"], 4))]
        table.add(cells, highlight=m == REF)
    whose = "the accelerator’s" if mem == "device" else "the process’s"
    table.note = (f"Mean over seeds of the main-comparison runs. Time/epoch: training time of one epoch "
                  f"(evaluation excluded) and peak memory ({whose} peak) as recorded in the result files; "
                  f"{bx}: ratio to {style.label(base)} on the same dataset and hardware; methods without "
                  "training epochs (the baseline models) have no ratio."
                  + (" †: the Snakemake benchmark of the whole job (start-up and data loading included)." if bench
                     else ""))
    keep = ["method", "epochs_run", "epoch_time_s", "epoch_time_s_x", "memory_mb", "memory_mb_x", "wall_time_s"]
    keep += ["bench_s", "bench_max_rss_mb"] if bench else []
    table.data = agg[keep].assign(memory=mem, baseline=base).reset_index(drop=True)
    return table


def cost_plot(agg: pd.DataFrame, base: str, mem: str):
    import matplotlib.pyplot as plt

    d = agg[agg["epochs_run"] > 0]
    methods = list(d["method"])
    fig, axes = plt.subplots(1, 2, figsize=(style.FULL_WIDTH, 0.8 + 0.2 * len(methods)), sharey=True)
    y = np.arange(len(methods))
    for ax, col, title in ((axes[0], "epoch_time_s_x", "time per epoch"),
                           (axes[1], "memory_mb_x", "peak GPU memory" if mem == "device" else "peak RSS")):
        vals = d[col].to_numpy(dtype=float)
        ax.barh(y, vals, color=[style.color(m) for m in methods],
                edgecolor=["black" if m == REF else "white" for m in methods], linewidth=0.6)
        ax.axvline(1.0, color="#333333", lw=0.9, ls="--")
        for yi, v in zip(y, vals):
            if not np.isnan(v):
                ax.text(v, yi, f" {v:.2f}×", va="center", fontsize=style.FONT_SIZE - 2.5)
        ax.set_xlim(0, np.nanmax(vals) * 1.22 if np.isfinite(np.nanmax(vals)) else 1)
        ax.set_title(f"{title} (× {style.label(base)})")
        ax.grid(axis="y", visible=False)
    axes[0].set_yticks(y)
    axes[0].set_yticklabels([style.label(m) for m in methods])
    axes[0].set_ylim(len(methods) - 0.5, -0.5)
    for lab in axes[0].get_yticklabels():
        if lab.get_text() == style.label(REF):
            lab.set_fontweight("bold")
            lab.set_color(style.color(REF))
    fig.tight_layout()
    return fig


def cost_reading(agg: pd.DataFrame, base: str, dataset: str, mem: str, device: str = "") -> str:
    a = agg.set_index("method")
    if REF not in a.index or not base:
        return f"On {dataset}, there is no PMTRec or {style.label(BASE)} run to compare costs with."
    r = a.loc[REF]
    trained = a[a["epochs_run"] > 0]
    slow = trained["epoch_time_s_x"].idxmax()
    text = (f"On {dataset}{', measured on ' + device + ',' if device else ''} a PMTRec epoch takes "
            f"{fmt_sig(r['epoch_time_s'])} s, "
            f"{r['epoch_time_s_x']:.2f}× {style.label(base)}'s, and its peak "
            f"{'GPU memory' if mem == 'device' else 'resident memory'} is {r['memory_mb_x']:.2f}× "
            f"{style.label(base)}'s ({fmt_sig(r['memory_mb'], 4)} MB).")
    if slow != REF:
        text += (f" The slowest method per epoch is {style.label(slow)} ({trained.loc[slow, 'epoch_time_s_x']:.2f}× "
                 f"{style.label(base)}).")
    rank = int((trained["epoch_time_s_x"] < r["epoch_time_s_x"]).sum()) + 1
    if len(trained) > 1 and rank == len(trained):
        return text + f" PMTRec is the slowest of the {len(trained)} trained methods."
    return text + f" PMTRec is the {_ordinal(rank)} fastest of {len(trained)} trained methods."


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


# ------------------------------------------------------------------------- benchmark suite CSVs
def _git(path: Path, *args: str) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(["git", *args, "--", path.name], cwd=path.parent, capture_output=True, text=True,
                              timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None


def bench_origin(path: str | Path, bench: pd.DataFrame) -> dict:
    """Whose numbers a benchmark-suite CSV holds: ``reference`` (the repository's shipped copy,
    unchanged: measured on the project's machine, dated by its last commit) or ``own`` (written
    on this checkout by ``python -m benchmarks``, dated by the file). Also its hardware column."""
    rows = bench[bench["source_path"] == str(path)] if "source_path" in bench else bench
    path = Path(path)
    shown = os.path.relpath(path) if path.is_absolute() and path.is_relative_to(Path.cwd()) else str(path)
    hw = sorted(rows["hardware"].dropna().astype(str).unique()) if "hardware" in rows else []
    tracked = _git(path, "ls-files", "--error-unmatch")
    same = _git(path, "diff", "--quiet", "HEAD") if tracked and tracked.returncode == 0 else None
    if same is not None and same.returncode == 0:
        log = _git(path, "log", "-1", "--format=%cs")
        date = log.stdout.strip() if log and log.returncode == 0 else ""
        return {"path": shown, "origin": "reference", "hardware": ", ".join(hw), "date": date or "unknown"}
    mtime = datetime.datetime.fromtimestamp(path.stat().st_mtime, datetime.timezone.utc) if path.exists() else None
    return {"path": shown, "origin": "own", "hardware": ", ".join(hw),
            "date": mtime.strftime("%Y-%m-%d") if mtime else "unknown"}


def bench_origin_text(origins: list[dict]) -> str:
    """The sentence that says whose benchmark numbers the section shows."""
    parts = []
    for o in origins:
        where = f"on {o['hardware']}" if o["hardware"] else "on unrecorded hardware"
        if o["origin"] == "reference":
            parts.append(f"{o['path']} holds reference numbers shipped with the repository, measured {where} "
                         f"(the project's benchmark machine) and committed on {o['date']}, not on the machine that "
                         "ran this study; make bench (python -m benchmarks) measures your own, which this "
                         "section then uses instead")
        else:
            parts.append(f"{o['path']} is your own benchmark run (it differs from the repository's reference copy "
                         f"or is not part of it), measured {where}, written on {o['date']}")
    return "Benchmark suite: " + "; ".join(parts) + "." if parts else ""


def bench_label(origins: list[dict]) -> str:
    """A short caption suffix: '(reference numbers: <hardware>, <date>)' or '(your run: ...)'."""
    bits = [f"{'reference numbers' if o['origin'] == 'reference' else 'your run'}: {o['hardware'] or 'hardware n/a'}, "
            f"{o['date']}" for o in origins]
    return f" ({'; '.join(bits)})" if bits else ""


def bench_step_table(bench: pd.DataFrame) -> tuple[Table | None, str]:
    """The suite's `step` section (training-step time × EW per method), one column per dataset/hardware."""
    b = bench[bench["section"] == "step"] if not bench.empty else bench
    if b.empty:
        return None, ""
    b = b.assign(col=b["dataset"].astype(str) + (" · " + b["hardware"].astype(str) if "hardware" in b else ""))
    piv = b.pivot_table(index="item", columns="col", values="value", aggfunc="mean")
    piv = piv.reindex(style.order_methods(piv.index))
    table = Table(["Method"] + list(piv.columns), font_size=7.5)
    for m, row in piv.iterrows():
        table.add([Cell(style.label(m), bold=m == REF)] + [Cell(fmt_num(v, 2) + "×" if not pd.isna(v) else "–")
                                                            for v in row], highlight=m == REF)
    table.note = ("From the benchmark suite (python -m benchmarks, benchmarks/results/*.csv): median training-step "
                  "time relative to EW, measured in one process.")
    table.data = b.reindex(columns=["dataset", "hardware", "source", "item", "value"]).rename(
        columns={"item": "method", "value": "step_time_x_ew"}).reset_index(drop=True)
    reading = ""
    if REF in piv.index:
        vals = ", ".join(f"{v:.2f}× on {c}" for c, v in piv.loc[REF].items() if not pd.isna(v))
        reading = f"In the benchmark suite, a PMTRec training step costs {vals} an EW step."
    return table, reading


def _target_rows(bench: pd.DataFrame) -> list[dict]:
    """Every suite figure that has a target; per step column, PMTRec and the slowest other method."""
    b = bench.assign(target=pd.to_numeric(bench.get("target"), errors="coerce"))
    b = b[b["target"].notna()]
    hw = b["hardware"].astype(str) if "hardware" in b else pd.Series("", index=b.index)
    b = b.assign(hardware=hw)
    out = []
    for (h, ds), g in b[b["section"] == "step"].groupby(["hardware", "dataset"], sort=False):
        if REF in set(g["item"]):
            r = g[g["item"] == REF].iloc[0]
            out.append({"figure": f"{style.label(REF)} step / {style.label(BASE)} step", "dataset": ds, "hardware": h,
                        "value": float(r["value"]), "unit": "×", "target": float(r["target"])})
        others = g[~g["item"].astype(str).str.startswith(REF) & (g["item"] != BASE)]
        if not others.empty:
            r = others.loc[others["value"].idxmax()]
            out.append({"figure": f"slowest other method ({style.label(r['item'])}) / {style.label(BASE)}",
                        "dataset": ds, "hardware": h, "value": float(r["value"]), "unit": "×",
                        "target": float(r["target"])})
    for _, r in b[b["section"] != "step"].iterrows():
        unit = str(r.get("unit", "")) if not pd.isna(r.get("unit", "")) else ""
        out.append({"figure": f"{r['section']}: {r['item']}", "dataset": r["dataset"], "hardware": r["hardware"],
                    "value": float(r["value"]), "unit": "×" if unit.startswith("x") else unit,
                    "target": float(r["target"])})
    for row in out:
        row["met"] = row["value"] <= row["target"]
    return out


def bench_targets_table(bench: pd.DataFrame) -> tuple[Table | None, str]:
    """The suite's figures against their targets (issue 7): met or not, as measured."""
    rows = _target_rows(bench) if not bench.empty and "target" in bench else []
    if not rows:
        return None, ""
    table = Table(["Figure", "Dataset", "Hardware", "Measured", "Target", "Met"], font_size=7.5)
    for r in rows:
        table.add([Cell(r["figure"]), Cell(str(r["dataset"])), Cell(str(r["hardware"])),
                   Cell(f"{r['value']:.2f}{r['unit']}"), Cell(f"≤ {r['target']:g}{r['unit']}"),
                   Cell("yes" if r["met"] else "no", bold=not r["met"])])
    table.note = ("From the benchmark suite (python -m benchmarks, benchmarks/results/*.csv); every figure with a "
                  "target, as measured. Step: training-step time relative to EW in one process. Evaluation: "
                  "full-ranking evaluation relative to its bare matmul + top-k. Scale: epoch-time growth divided by "
                  "interaction growth from the smallest to the largest synthetic scale.")
    table.data = pd.DataFrame(rows)
    missed = [r for r in rows if not r["met"]]
    reading = f"{len(rows) - len(missed)} of {len(rows)} benchmark figures meet their targets."
    if missed:
        reading += " Not met: " + "; ".join(f"{r['figure']} on {r['dataset']} ({r['value']:.2f}{r['unit']} against "
                                            f"≤ {r['target']:g}{r['unit']})" for r in missed) + "."
    return table, reading


def cost_plot_reading(agg: pd.DataFrame, base: str, dataset: str, mem: str) -> str:
    d = agg[agg["epochs_run"] > 0].set_index("method")
    if d.empty or not base:
        return ""
    t, m = d["epoch_time_s_x"], d["memory_mb_x"]
    what = "GPU memory" if mem == "device" else "resident memory"
    return (f"Bars right of the dashed line cost more than {style.label(base)}. On {dataset}, {int((t > 1.05).sum())} "
            f"of {len(d)} trained methods are more than 5% slower per epoch (range {t.min():.2f}× to {t.max():.2f}×), "
            f"and peak {what} ranges from {m.min():.2f}× to {m.max():.2f}× ({style.label(m.idxmax())} highest).")


# ------------------------------------------------------------------------- the study's own cost
STAGE_LABEL = {"prepare": "prepare", "tune": "tuning", "main": "main comparison", "ablation": "ablation",
               "sensitivity": "sensitivity"}
PROJECTION_NOTE = ("python -m benchmarks.study_cost projects these per-job costs onto the paper study "
                   "(config/paper.yaml): benchmarks/results/study_cost_projection.csv, benchmarks/README.md.")


def study_cost_table(eff: pd.DataFrame) -> tuple[Table, str]:
    """CPU-seconds of this study per stage and dataset (pmtrec.study.cost.cost_table), with the total."""
    from pmtrec.study.cost import cost_table

    g = cost_table(eff, by=["stage", "dataset"])
    if g.empty:
        raise ReportError("efficiency.csv: no runs to count the study's cost from")
    total_cpu = g["cpu_s"].sum()
    g["share"] = g["cpu_s"] / total_cpu if total_cpu > 0 else np.nan
    table = Table(["Stage", "Dataset", "Jobs", "CPU-s", "Share", "CPU-s / job", "Epochs / job", "s / epoch"],
                  font_size=7.5)
    for _, r in g.iterrows():
        table.add([Cell(STAGE_LABEL.get(r["stage"], r["stage"])), Cell(str(r["dataset"])), Cell(str(int(r["jobs"]))),
                   Cell(fmt_sig(r["cpu_s"], 4)), Cell(f"{r['share']:.0%}" if pd.notna(r["share"]) else "–"),
                   Cell(fmt_sig(r["cpu_s_mean"])), Cell(fmt_sig(r["epochs_mean"])), Cell(fmt_sig(r["epoch_s_mean"]))])
    jobs = int(g["jobs"].sum())
    table.add([Cell("total", bold=True), Cell(""), Cell(str(jobs), bold=True), Cell(fmt_sig(total_cpu, 4), bold=True),
               Cell("100%" if total_cpu > 0 else "–"), Cell(fmt_sig(total_cpu / jobs)), Cell(""), Cell("")], rule=True)
    sources = sorted(set("+".join(g["source"]).split("+")))
    fallback = [s for s in sources if s != "bench_cpu_time_s"]
    table.note = ("CPU-seconds of every training job of this study, from its Snakemake benchmark (cpu_time)"
                  + (f"; where that is missing, from {' or '.join(fallback)} (the job's wall seconds)" if fallback
                     else "")
                  + ". Epochs / job and s / epoch: means over the jobs (s / epoch over trained jobs only, training "
                    "time without evaluation). " + PROJECTION_NOTE)
    table.data = pd.concat([g[["stage", "dataset", "jobs", "cpu_s", "share", "cpu_s_mean", "epochs_mean",
                               "epoch_s_mean", "source"]],
                            pd.DataFrame([{"stage": "total", "dataset": "", "jobs": jobs, "cpu_s": total_cpu,
                                           "share": 1.0 if total_cpu > 0 else np.nan,
                                           "cpu_s_mean": total_cpu / jobs}])], ignore_index=True)
    by_stage = g.groupby("stage", sort=False)["cpu_s"].sum()
    top = by_stage.idxmax()
    reading = (f"The study's {jobs} runs used {fmt_sig(total_cpu, 4)} CPU-seconds "
               f"({total_cpu / 3600:.2f} CPU hours); the {STAGE_LABEL.get(top, top)} stage took the most, "
               f"{by_stage[top] / total_cpu:.0%}." if total_cpu > 0 else
               f"The study's {jobs} runs recorded no CPU time.")
    return table, reading
