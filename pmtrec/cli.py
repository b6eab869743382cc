"""Command line: pmtrec prepare, train, probe, embedding-map, collect, compare, report, methods and config.

Every user-facing error is one line on stderr and a non-zero exit status: 2 for a bad
input, configuration or file (``pmtrec: error: ...``), 1 for an unexpected internal error
(``pmtrec: internal error: ...``; ``PMTREC_DEBUG=1`` shows its traceback), 130 on Ctrl-C and
143 on SIGTERM (temporary files are removed; a training checkpoint resumes the run). `pmtrec compare`
exits 3 when a rerun does not reproduce the reference.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path

from pmtrec import __version__, logs
from pmtrec.errors import ConfigError, PmtrecError

_LOG = logs.get_logger("pmtrec.cli")

EPILOG = ("Configuration: the packaged defaults (print them with `pmtrec config`), then each --config FILE, then each --set "
          "key.path=value in order. Keys are documented in config/README.md.")


class _DefaultsFormatter(argparse.HelpFormatter):
    """--help with each option's default, where it has a meaningful one (not None, False or [])."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if "%(default)" in text or default in (None, False, [], argparse.SUPPRESS) or not action.option_strings:
            return text
        return f"{text} (default: {default})"


def _add_output_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("output")
    g.add_argument("--quiet", "-q", action="store_true",
                   help="only notices, warnings and the final line (no progress bars, per-epoch lines or tables)")
    g.add_argument("--verbose", "-v", action="store_true", help="also debug lines: where each file came from, "
                   "the resolved config")
    g.add_argument("--log-file", metavar="FILE", help="append every line, debug included, with times, to FILE")


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", metavar="FILE", action="append", default=None,
                   help="YAML run config merged over the defaults (repeatable: merged in order)")
    p.add_argument("--set", "-s", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key, e.g. --set train.epochs=5 (repeatable; value parsed as YAML)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pmtrec", description=__doc__.splitlines()[0], epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"pmtrec {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # every subcommand's --help shows the defaults of its options
    add = sub.add_parser

    def add_command(*a, **k):
        command = add(*a, formatter_class=_DefaultsFormatter, **k)
        _add_output_args(command)
        return command
    sub.add_parser = add_command

    p = sub.add_parser("prepare", help="raw dataset -> canonical prepared dataset (parquet + statistics)",
                       description="Load the source named by dataset.source (mirror, cache or download), "
                                   "filter, split and write the canonical prepared dataset.", epilog=EPILOG)
    _add_config_args(p)
    p.add_argument("--dataset", help="shorthand for --set dataset.source=NAME")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="output folder (written atomically)")

    p = sub.add_parser("train", help="train one model with one method and write the result JSON",
                       description="Train MF on the main task plus the auxiliary tasks the dataset has, "
                                   "combining them with --method; early stopping on validation NDCG@20; "
                                   "test metrics at the best epoch.", epilog=EPILOG)
    _add_config_args(p)
    p.add_argument("--data", "-d", metavar="DIR",
                   help="prepared dataset folder (from `pmtrec prepare`); default: prepare from the config in memory")
    p.add_argument("--method", "-m", help="method name (see `pmtrec methods`); shorthand for --set train.method=NAME")
    p.add_argument("--seed", type=int, help="shorthand for --set train.seed=N")
    p.add_argument("--epochs", type=int, help="shorthand for --set train.epochs=N")
    p.add_argument("--device", help="auto (CUDA when available), cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, help="torch intra-op threads for this run")
    p.add_argument("--out", "-o", metavar="FILE", help="result JSON (written atomically), with the per-user test "
                   "metrics beside it (FILE stem + .per_user.npz); default: print a summary only")
    p.add_argument("--checkpoint", metavar="FILE",
                   help="checkpoint written every epoch; an existing one of the same config is resumed")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bars, but the per-epoch lines (for log files: the workflow's jobs)")
    p.add_argument("--label", dest="labels", action="append", default=[], metavar="KEY=VALUE",
                   help="record KEY=VALUE (value parsed as YAML) in the result's `labels`, e.g. what the run "
                        "is in a study (the workflow sets dataset, stage, setting); not part of the config")
    p.add_argument("--embeddings", metavar="FILE",
                   help="also save the best-epoch user and item tables here (.npz, float16; for `pmtrec probe` "
                        "and `pmtrec embedding-map`), named with its hash in the result")

    p = sub.add_parser("probe", help="linear probes of a run's saved embeddings (category, social link, activity)",
                       description="Fit logistic-regression probes on held-out folds to the embeddings a result "
                                   "JSON saved (--embeddings), and on their row permutation (chance level).")
    p.add_argument("--result", "-r", required=True, metavar="FILE", help="result JSON of a run with embeddings")
    p.add_argument("--data", "-d", required=True, metavar="DIR", help="the run's prepared dataset folder")
    p.add_argument("--folds", type=int, default=5, help="stratified folds (default: 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the folds, samples and permutation (default: 0)")
    p.add_argument("--out", "-o", required=True, metavar="FILE", help="probe results JSON (written atomically)")

    p = sub.add_parser("embedding-map", help="2-D maps (PCA, t-SNE) of several runs' item embeddings",
                       description="Project the same sample of items of each run to 2-D and write the "
                                   "coordinates with each item's category as CSV.")
    p.add_argument("--result", "-r", required=True, nargs="+", metavar="FILE", help="result JSONs (one dataset)")
    p.add_argument("--data", "-d", required=True, metavar="DIR", help="their prepared dataset folder")
    p.add_argument("--items", type=int, default=2000, help="items drawn for the maps (default: 2000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the item sample and of t-SNE (default: 0)")
    p.add_argument("--out", "-o", required=True, metavar="FILE", help="coordinates CSV (written atomically)")

    p = sub.add_parser("report", help="the PDF report of a results folder (tables, notebooks, PDF)",
                       description="Aggregate every result JSON under the folders (each says what it is in its "
                                   "study through its labels), execute the report notebooks and compile the PDF: "
                                   "what the workflow's aggregate, notebook and report rules do.")
    p.add_argument("results", nargs="+", metavar="RESULTS_DIR", help="results folder(s), e.g. a workflow's results/")
    p.add_argument("--out", "-o", required=True, metavar="PDF", help="the report PDF (written atomically)")
    p.add_argument("--work", metavar="DIR", help="tables, executed notebooks and sections (default: <PDF>.work/)")
    p.add_argument("--prepared", action="append", default=[], metavar="NAME=DIR",
                   help="a dataset's prepared folder, when not where its results recorded it (repeatable)")
    p.add_argument("--reference", default="pmtrec", help="the method tested against the best baseline")
    p.add_argument("--exclude", nargs="*", default=None, metavar="METHOD",
                   help="methods never taken as the best baseline (default: the baseline models)")
    p.add_argument("--min-seeds", type=int, default=5,
                   help="no p-value below this many paired seeds (the workflow's significance.min_seeds)")
    p.add_argument("--equivalence-margin", type=float, default=0.01,
                   help="equivalence (TOST) bounds: +- this fraction of the other method's mean")
    p.add_argument("--n-resamples", type=int, default=9999, help="sign-flip resamples of the user-level test")
    p.add_argument("--plugins", metavar="MODULE", nargs="+", default=[],
                   help="import these modules first (plugin methods in the results)")

    p = sub.add_parser("collect", help="tidy CSV of result JSONs made anywhere (one row per run, split, metric)",
                       description="Collect result JSONs (files, or folders searched recursively) into one tidy "
                                   "table: kind, dataset, method, variant, seed, the run's path, config hash, best "
                                   "epoch and labels, split, metric, value. A result without labels is a main run.")
    p.add_argument("results", nargs="+", metavar="RESULT", help="result JSON files or folders holding them")
    p.add_argument("--out", "-o", required=True, metavar="CSV", help="the runs table (written atomically)")
    p.add_argument("--summary", metavar="CSV", help="also the mean, std and n over seeds of each metric")

    p = sub.add_parser("compare", help="check a rerun's summary.csv against a reference study's (means in intervals)",
                       description="Per kind, dataset, method, variant, split and metric of the reference's "
                                   "summary.csv, the new mean must lie within the reference mean's two-sided t "
                                   "interval over seeds (--level), widened by --atol. Prints the rows that are not "
                                   "ok and a summary line. Exit status 0 when every reference row is ok, 3 when one "
                                   "is outside its interval or missing from NEW; rows only in NEW are listed as "
                                   "extra and do not fail it.")
    p.add_argument("reference", metavar="REFERENCE", help="the reference's tables folder (holding summary.csv), "
                   "results folder (holding tables/summary.csv) or summary.csv")
    p.add_argument("new", metavar="NEW", help="the rerun's tables folder, results folder or summary.csv")
    p.add_argument("--metrics", nargs="+", metavar="METRIC", help="metrics compared (default: ndcg@20 recall@20)")
    p.add_argument("--splits", nargs="+", metavar="SPLIT", help="splits compared (default: test)")
    p.add_argument("--kinds", nargs="+", metavar="KIND", help="kinds compared: main, ablation, sensitivity, tune "
                   "(default: all)")
    p.add_argument("--level", type=float, default=0.95, help="confidence level of the reference's intervals")
    p.add_argument("--atol", type=float, default=1e-6, help="absolute tolerance added to each side of an interval "
                   "(what a row with n=1 or std=0 is compared within)")
    p.add_argument("--out", "-o", metavar="CSV", help="the full table, every row with its interval and status "
                   "(written atomically)")

    p = sub.add_parser("methods", help="list the catalogue: methods, ablation variants and baseline models",
                       description="Every name train.method accepts, with its family and hyperparameters; "
                                   "--json gives the whole catalogue (labels, colours, order, tunable ranges).")
    p.add_argument("--json", action="store_true", help="the catalogue as JSON (what the workflow and report read)")
    p.add_argument("--markdown", action="store_true", help="the catalogue as the Markdown table of docs/methods.md")
    p.add_argument("--plugins", metavar="MODULE", nargs="+", default=[],
                   help="import these modules first (their registered methods are listed too)")
    p = sub.add_parser("config", help="print the resolved configuration as YAML")
    _add_config_args(p)
    return parser


def _resolve(args) -> dict:
    from pmtrec.config import load_config

    overrides = list(args.overrides)
    shorthands = {"dataset": "dataset.source", "method": "train.method", "seed": "train.seed",
                  "epochs": "train.epochs", "device": "train.device", "threads": "train.threads"}
    for attr, key in shorthands.items():
        value = getattr(args, attr, None)
        if value is not None:
            overrides.append(f"{key}={value}")
    if getattr(args, "quiet", False) or getattr(args, "no_progress", False):
        overrides.append("train.progress=false")
    return load_config(args.config, overrides)


def cmd_prepare(args) -> int:
    from pmtrec.data import prepare_dataset

    cfg = _resolve(args)
    prepare_dataset(cfg, args.out)
    _say(f"prepared dataset written to {args.out}")
    return 0


def _explicit_keys(args) -> set[str]:
    """The dotted keys the user set: those of --config FILE and of every --set."""
    from pmtrec.config import flatten_keys, load_yaml, parse_override

    keys = {k for path in (args.config or []) for k in flatten_keys(load_yaml(path))}
    for item in args.overrides:
        keys |= set(flatten_keys(parse_override(item)))
    if getattr(args, "dataset", None):
        keys.add("dataset.source")
    return keys


def _labels(items: list[str]) -> dict:
    from pmtrec.config import parse_override

    out: dict = {}
    for item in items:
        if "=" not in item or not item.split("=", 1)[0].strip():
            raise ConfigError(f"--label {item!r}: expected KEY=VALUE")
        key, value = item.split("=", 1)
        out[key.strip()] = parse_override(f"x={value}")["x"]
    return out


def _check_writable(path: str, what: str) -> None:
    """Fail now, not after hours of training, when ``path`` cannot be written."""
    parent = Path(path).expanduser().resolve().parent
    probe = parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} {path}: cannot write there ({probe} is not a writable folder)")
    if Path(path).is_dir():
        raise ConfigError(f"{what} {path}: is a folder, expected a file name")


def _check_run(cfg: dict) -> None:
    """The run's settings and method, checked before any data is loaded (a typo fails in a second)."""
    from pmtrec.config import check_run_config
    from pmtrec.methods import MODELS
    from pmtrec.methods.registry import resolve

    check_run_config(cfg)
    if cfg["train"]["method"] not in MODELS:
        resolve(cfg["train"]["method"], cfg["train"].get("method_params") or {})


def cmd_train(args) -> int:
    from pmtrec.data import prepare_in_memory, read_prepared
    from pmtrec.train import train
    from pmtrec.training.results import write_result

    cfg = _resolve(args)
    _check_run(cfg)
    labels = _labels(args.labels)
    for option, path in (("--out", args.out), ("--embeddings", args.embeddings), ("--checkpoint", args.checkpoint)):
        if path:
            _check_writable(path, option)
    data_info = None
    if args.data:
        from pmtrec.data.store import adopt_prepared_config

        cfg, data_info = adopt_prepared_config(cfg, args.data, _explicit_keys(args))
        data = read_prepared(args.data)
    else:
        data = prepare_in_memory(cfg)
    if not args.out:
        _LOG.warning("no --out given: the result is printed, not saved")
    from pmtrec.training.per_user import per_user_path

    result = train(cfg, data, checkpoint=args.checkpoint, embeddings=args.embeddings,
                   per_user=per_user_path(args.out) if args.out else None)  # written before the result
    if labels:
        result["labels"] = labels
    if data_info is not None:
        result["data"] = data_info
    if args.out:
        write_result(args.out, result)
    t = result["test"]["overall"]
    _say(f"{result['method']} on {result['dataset']} (seed {result['seed']}): best epoch {result['best_epoch']}, "
         f"test recall@20={t['recall@20']:.4f} ndcg@20={t['ndcg@20']:.4f}, "
         f"{result['epoch_time_s']:.2f}s/epoch" + (f" -> {args.out}" if args.out else ""))
    return 0


def cmd_probe(args) -> int:
    from pmtrec.analysis.runs import probe_run
    from pmtrec.data import read_prepared
    from pmtrec.io import write_json

    if args.folds < 2:
        raise ConfigError(f"--folds: expected an integer >= 2, got {args.folds}")
    record = probe_run(args.result, read_prepared(args.data), folds=args.folds, seed=args.seed)
    write_json(args.out, record)
    rows = [r for r in record["rows"] if r["group"] == "all"]
    summary = {}
    for r in rows:
        summary.setdefault((r["probe"], r["metric"], r["baseline"]), []).append(r["value"])
    for (probe, metric, baseline), values in sorted(summary.items()):
        if baseline == "embeddings":
            chance = summary.get((probe, metric, "permuted"), [float("nan")])
            print(f"{probe:8s} {metric:9s} {sum(values) / len(values):.4f} (permuted {sum(chance) / len(chance):.4f})")
    _say(f"probes of {record['method']} on {record['dataset']} (seed {record['seed']}) -> {args.out}")
    return 0


def cmd_embedding_map(args) -> int:
    from pmtrec.analysis.runs import map_runs
    from pmtrec.data import read_prepared
    from pmtrec.io import atomic_path

    frame = map_runs(args.result, read_prepared(args.data), size=args.items, seed=args.seed)
    with atomic_path(args.out) as tmp:
        frame.to_csv(tmp, index=False)
    _say(f"maps of {frame['method'].nunique()} runs ({frame['item'].nunique()} items) -> {args.out}")
    return 0


def cmd_collect(args) -> int:
    from pmtrec.collect import collect, summarise
    from pmtrec.io import atomic_path

    for option, path in (("--out", args.out), ("--summary", args.summary)):
        if path:
            _check_writable(path, option)
    runs = collect(args.results)
    tables = [(args.out, runs)] + ([(args.summary, summarise(runs))] if args.summary else [])
    for path, frame in tables:
        with atomic_path(path) as tmp:
            frame.to_csv(tmp, index=False)
    n = runs.drop_duplicates("path")
    _say(f"{len(n)} runs ({n['method'].nunique()} methods, {n['dataset'].nunique()} datasets) -> {args.out}"
         + (f", summary -> {args.summary}" if args.summary else ""))
    return 0


def cmd_compare(args) -> int:
    from pmtrec.io import atomic_path
    from pmtrec.study.compare import compare_tables, counts, failures_text, summary_line

    if args.out:
        _check_writable(args.out, "--out")
    if not 0 < args.level < 1:  # checked here too, to name the option
        raise ConfigError(f"--level {args.level}: expected a number between 0 and 1 (exclusive)")
    if not args.atol >= 0:
        raise ConfigError(f"--atol {args.atol}: expected a number >= 0")
    table = compare_tables(args.reference, args.new, metrics=args.metrics or ("ndcg@20", "recall@20"),
                           splits=args.splits or ("test",), kinds=args.kinds, level=args.level, atol=args.atol)
    if args.out:
        with atomic_path(args.out) as tmp:
            table.to_csv(tmp, index=False)
    failures = failures_text(table, full=args.out)
    if failures:  # a table: INFO, so -q keeps only the summary line
        _LOG.info(failures)
    c = counts(table)
    _say(summary_line(table, args.level) + (f" -> {args.out}" if args.out else ""))
    return 3 if c["outside"] or c["missing"] else 0  # not 1: that is an internal error


def cmd_methods(args) -> int:
    from pmtrec.methods import entries
    from pmtrec.plugins import load_plugins

    load_plugins(args.plugins, "--plugins")
    catalogue = entries()
    if args.json:
        print(json.dumps([e.to_dict() for e in catalogue], indent=1, default=list))
        return 0
    if args.markdown:
        from pmtrec.methods.registry import markdown_table

        print(markdown_table(), end="")
        return 0
    for e in catalogue:
        params = ", ".join(f"{k}={v!r}" for k, v in e.params.items())
        tunable = ", ".join(f"{k} in {list(v)}" for k, v in e.tunable.items())
        print(f"{e.name:22s} {e.kind:8s} {e.family:24s} {e.summary}"
              + (f"\n{'':22s}   parameters: {params}" if params and e.kind != "variant" else "")
              + (f"\n{'':22s}   tuned over: {tunable}" if tunable and e.kind == "method" else ""))
    return 0


def cmd_report(args) -> int:
    from pmtrec.plugins import load_plugins
    from pmtrec.report.study import build_study_report

    load_plugins(args.plugins, "--plugins")
    prepared = {}
    for item in args.prepared:
        name, sep, folder = item.partition("=")
        if not sep or not name:
            raise ConfigError(f"--prepared {item!r}: expected NAME=DIR")
        prepared[name] = folder
    _check_writable(args.out, "--out")
    work = Path(args.work) if args.work else Path(f"{args.out}.work")
    out = build_study_report(args.results, args.out, work, prepared=prepared, reference=args.reference,
                             exclude=args.exclude,
                             significance={"min_seeds": args.min_seeds, "equivalence_margin": args.equivalence_margin,
                                           "n_resamples": args.n_resamples})
    _say(f"report written to {out} (tables and notebooks in {work})")
    return 0


def cmd_config(args) -> int:
    import yaml

    print(yaml.safe_dump(_resolve(args), sort_keys=False), end="")
    return 0


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that ``finally`` blocks (temporary files) run.

    A BaseException, like KeyboardInterrupt: no ``except Exception`` in the library swallows it.
    """


def _on_sigterm(signum, frame):
    raise Terminated()


def _one_line(text: str) -> str:
    return " | ".join(ln.strip() for ln in str(text).splitlines() if ln.strip())


def _say(text: str, *, err: bool = False, level: int = 20) -> None:
    """A command's own output line: to the terminal as is, and to the --log-file."""
    print(text, file=sys.stderr if err else sys.stdout)
    logs.file_only(_LOG, level, text)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {"prepare": cmd_prepare, "train": cmd_train, "probe": cmd_probe, "embedding-map": cmd_embedding_map,
               "methods": cmd_methods, "config": cmd_config, "report": cmd_report, "collect": cmd_collect,
               "compare": cmd_compare}
    try:
        logs.configure(-1 if args.quiet else 1 if args.verbose else 0, args.log_file)
    except OSError as exc:
        print(f"pmtrec: error: --log-file {args.log_file}: cannot write there ({exc.strerror})", file=sys.stderr)
        return 2
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return handler[args.command](args)
    except (PmtrecError, OSError) as exc:  # a bad input, config or file (an OSError names its file)
        _say(f"pmtrec: error: {_one_line(exc)}", err=True, level=40)
        return 2
    except KeyboardInterrupt:
        _say("pmtrec: interrupted", err=True, level=40)
        return 130
    except Terminated:
        ckpt = getattr(args, "checkpoint", None)
        hint = f"; rerun the same command to resume from {ckpt}" if ckpt and Path(ckpt).exists() else ""
        _say(f"pmtrec: terminated (SIGTERM){hint}", err=True, level=40)
        return 143
    except Exception as exc:
        if os.environ.get("PMTREC_DEBUG"):
            raise
        _LOG.debug("internal error", exc_info=True)  # the traceback, in the --log-file (and with -v)
        if type(exc).__name__ == "OutOfMemoryError":  # torch.OutOfMemoryError, without importing torch here
            _say(f"pmtrec: error: out of device memory ({_one_line(exc)[:200]}); lower train.batch_size or "
                 "eval.batch_size", err=True, level=40)
            return 2
        _say(f"pmtrec: internal error: {type(exc).__name__}: {_one_line(exc)[:300]} "
             "(set PMTREC_DEBUG=1 for the traceback)", err=True, level=40)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        logs.reset()


if __name__ == "__main__":
    raise SystemExit(main())
