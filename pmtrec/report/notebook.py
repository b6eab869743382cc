"""Notebook glue: one call at the top of every report notebook.

:func:`setup` applies the figure theme and makes a :class:`pmtrec.errors.PmtrecError` (e.g. a
missing table) show as the single line ``pmtrec report: error: <message>`` instead of a
traceback; the cell still fails, so papermill stops and exits non-zero
(``PapermillExecutionError`` carries the same line).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from pmtrec.errors import PmtrecError

# The report's notebooks (package data: pmtrec/report/notebooks/<name>.ipynb, also reachable as
# notebooks/ at the repository root), in the PDF's order: the one list of them.
NOTEBOOKS = ("00_claims", "01_datasets", "02_main_comparison", "03_ablation", "04_personalization", "05_training_dynamics",
             "06_sensitivity", "07_efficiency", "08_embeddings")


def notebook_path(name: str) -> str:
    """The installed copy of report notebook ``name`` (an editable install: the repository's)."""
    from importlib import resources

    if name not in NOTEBOOKS:
        raise PmtrecError(f"unknown report notebook '{name}' (known: {', '.join(NOTEBOOKS)})")
    return str(resources.files("pmtrec.report") / "notebooks" / f"{name}.ipynb")

PREFIX = "pmtrec report: error: "


def _one_line(shell, etype, evalue, tb, tb_offset=None):  # IPython custom-exception handler
    """Show ``pmtrec report: error: <message>`` as the cell's error output (ename, evalue, a 1-line
    traceback). IPython's run_code calls this handler and ignores its return value, so the error
    output is sent here; the cell still counts as failed (papermill stops, exit status 1)."""
    msg = PREFIX + str(evalue)
    show = getattr(shell, "_showtraceback", None)
    if show is not None:
        show(etype, evalue, [msg])
    else:  # pragma: no cover - very old IPython
        print(msg, file=sys.stderr, flush=True)
    return [msg]


def setup() -> None:
    """Figure theme + one-line errors (no-op outside IPython, where the error simply propagates)."""
    from pmtrec.report.style import theme

    theme()
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None:
        shell.set_custom_exc((PmtrecError,), _one_line)
        try:
            shell.run_line_magic("matplotlib", "inline")
        except Exception:  # not a notebook front end (plain IPython without a display)
            pass


def as_list(value: Any) -> list:
    """A papermill parameter that should be a list: None/'' -> [], 'a,b' or JSON -> list."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return list(json.loads(text))
        return [v.strip() for v in text.split(",") if v.strip()]
    return list(value)


def as_dict(value: Any) -> dict:
    """A papermill parameter that should be a mapping: None/'' -> {}, JSON text -> dict."""
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        return dict(json.loads(value))
    return dict(value)
