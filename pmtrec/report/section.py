"""What one notebook hands to the PDF builder: ``<out_dir>/section.json`` + figures + tables.

``section.json``::

    {"format": "pmtrec.report-section/1", "order": 2, "title": "Main comparison",
     "intro": "...", "provenance": {...},
     "items": [{"kind": "table", "id": "main-ciao", "caption": "...", "table": {...Table.to_json()},
                "csv": "tab_main-ciao.csv", "tex": "tab_main-ciao.tex", "reading": "..."},
               {"kind": "figure", "id": "main-ciao-plot", "caption": "...", "file": "main_ciao.svg",
                "width": 1.0, "reading": "..."},
               {"kind": "text", "text": "..."}]}

Everything is plain strings: the template renders them as text, so nothing needs escaping.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from pmtrec.io import write_json, write_text
from pmtrec.report.tables import Table

FORMAT = "pmtrec.report-section/1"
SECTION_FILE = "section.json"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "item"


class Section:
    """Collects the items of one report section and writes them to ``out_dir``."""

    def __init__(self, out_dir: str | os.PathLike, title: str, intro: str = "", order: int | None = None):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.title = title
        self.intro = intro
        self.order = order
        self.items: list[dict[str, Any]] = []
        self._ids: set[str] = set()

    def _id(self, wanted: str) -> str:
        base = _slug(wanted)
        out, i = base, 2
        while out in self._ids:
            out, i = f"{base}-{i}", i + 1
        self._ids.add(out)
        return out

    def table(self, table: Table, caption: str, reading: str = "", name: str | None = None) -> dict:
        """Add a table; also writes ``tab_<id>.csv`` (its numbers, ``table.data``: one column per
        value, flags as booleans) and ``tab_<id>.tex`` (the displayed table, booktabs) for papers."""
        ident = self._id(name or caption[:40])
        csv, tex = f"tab_{ident}.csv", f"tab_{ident}.tex"
        data = table.data if table.data is not None else _plain_frame(table)
        write_text(self.out_dir / csv, data.to_csv(index=False))
        write_text(self.out_dir / tex, table.to_latex(f"{caption}\n{table.note}"))
        item = {"kind": "table", "id": ident, "caption": caption, "table": table.to_json(), "csv": csv,
                "tex": tex, "reading": reading}
        self.items.append(item)
        return item

    def figure(self, fig, caption: str, reading: str = "", name: str | None = None,
               width: float | None = None) -> dict:
        """Add a matplotlib figure (saved as SVG, then closed).

        ``width`` is the fraction of the text width it takes in the PDF; by default the figure's
        own width over :data:`~pmtrec.report.style.FULL_WIDTH`, so every figure's fonts print at
        the same size.
        """
        from pmtrec.report.style import FULL_WIDTH, savefig

        if width is None:
            width = min(1.0, fig.get_figwidth() / FULL_WIDTH)
        ident = self._id(name or caption[:40])
        path = savefig(fig, self.out_dir / f"fig_{ident}.svg")
        _show_and_close(fig)
        item = {"kind": "figure", "id": ident, "caption": caption, "file": path.name, "width": round(float(width), 3),
                "reading": reading}
        self.items.append(item)
        return item

    def text(self, text: str) -> dict:
        """A paragraph (e.g. why a part is skipped)."""
        item = {"kind": "text", "text": text}
        self.items.append(item)
        return item

    def to_json(self) -> dict:
        return {"format": FORMAT, "order": self.order, "title": self.title, "intro": self.intro,
                "items": self.items}

    def save(self) -> Path:
        path = self.out_dir / SECTION_FILE
        write_json(path, self.to_json())
        return path


def _plain_frame(table: Table):
    """The cells' text without markup, for a table built without numbers (``data``)."""
    import pandas as pd

    return pd.DataFrame([[c.text + c.sup for c in r] for r in table.rows], columns=table.columns)


def _show_and_close(fig) -> None:
    """In a notebook, show the figure once (as its output); then free it either way."""
    import matplotlib.pyplot as plt

    from pmtrec.report.style import _in_notebook

    if _in_notebook():
        from IPython.display import display

        display(fig)
    plt.close(fig)


def read_section(out_dir: str | Path) -> dict:
    from pmtrec.report.data import ReportError

    path = Path(out_dir) / SECTION_FILE
    if not path.is_file():
        raise ReportError(f"{path}: section missing (was the notebook executed?)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    if data.get("format") != FORMAT:
        raise ReportError(f"{path}: not a report section (format {data.get('format')!r}, expected {FORMAT!r})")
    for item in data["items"]:
        if item["kind"] == "figure" and not (Path(out_dir) / item["file"]).is_file():
            raise ReportError(f"{Path(out_dir) / item['file']}: figure missing")
    return data
