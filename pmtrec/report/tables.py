"""Report tables: mean ± std cells, best bold / second underlined, significance markers.

A :class:`Table` is data (cell text plus flags), not markup: the PDF template
(pmtrec/report/template.typ) renders it from JSON, and the notebooks show it as a DataFrame
(``**best**``, ``__second__``). No escaping is needed anywhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import pandas as pd

__all__ = ["Cell", "Table", "fmt_num", "fmt_mean_std", "fmt_pct", "rank_marks", "sig_marker", "SIG_NOTE"]

SIG_NOTE = "* p < 0.05, ** p < 0.01 (paired test over seeds against the best baseline)"


def _nan(x: Any) -> bool:
    try:
        return x is None or math.isnan(float(x))
    except (TypeError, ValueError):
        return False


def fmt_num(x: Any, digits: int = 4) -> str:
    """A metric value with fixed decimals ('0.1234'); '–' for missing."""
    if _nan(x):
        return "–"
    return f"{float(x):.{digits}f}"


def fmt_mean_std(mean: Any, std: Any, digits: int = 4) -> str:
    """'0.1234 ± 0.0056' (the std is left out when undefined, e.g. one seed)."""
    if _nan(mean):
        return "–"
    return fmt_num(mean, digits) if _nan(std) else f"{fmt_num(mean, digits)} ± {fmt_num(std, digits)}"


def fmt_pct(x: Any, digits: int = 1, sign: bool = True) -> str:
    """A ratio as a percentage: 0.0321 -> '+3.2%'."""
    if _nan(x):
        return "–"
    return f"{100 * float(x):{'+' if sign else ''}.{digits}f}%"


def fmt_int(x: Any) -> str:
    return "–" if _nan(x) else f"{int(round(float(x))):,}"


def fmt_sig(x: Any, digits: int = 3) -> str:
    """A number with ``digits`` significant digits, scientific when tiny ('1.23e-04')."""
    if _nan(x):
        return "–"
    x = float(x)
    if x != 0 and abs(x) < 10 ** -(digits - 1):
        return f"{x:.{digits - 1}e}"
    return f"{x:.{digits}g}" if abs(x) < 10 ** digits else f"{x:,.0f}"


def rank_marks(values: Sequence[Any], higher_is_better: bool = True, digits: int | None = 4) -> list[str | None]:
    """'best' / 'second' / None per value; ties (at the shown precision) share a rank."""
    def key(v):
        return round(float(v), digits) if digits is not None else float(v)

    valid = sorted({key(v) for v in values if not _nan(v)}, reverse=higher_is_better)
    best = valid[0] if valid else None
    second = valid[1] if len(valid) > 1 else None
    out = []
    for v in values:
        if _nan(v):
            out.append(None)
        elif key(v) == best:
            out.append("best")
        elif key(v) == second:
            out.append("second")
        else:
            out.append(None)
    return out


def sig_marker(p: Any) -> str:
    if _nan(p):
        return ""
    return "**" if float(p) < 0.01 else "*" if float(p) < 0.05 else ""


@dataclass
class Cell:
    text: str
    bold: bool = False
    underline: bool = False
    sup: str = ""      # superscript marker (significance)
    italic: bool = False

    def to_json(self) -> dict | str:
        if not (self.bold or self.underline or self.sup or self.italic):
            return self.text
        out: dict[str, Any] = {"t": self.text}
        if self.bold:
            out["b"] = True
        if self.underline:
            out["u"] = True
        if self.italic:
            out["i"] = True
        if self.sup:
            out["sup"] = self.sup
        return out

    def plain(self) -> str:
        text = self.text + self.sup
        if self.bold:
            text = f"**{text}**"
        if self.underline:
            text = f"__{text}__"
        return text


@dataclass
class Table:
    """Header, rows of cells, and layout hints for the template."""

    columns: list[str]
    rows: list[list[Cell]] = field(default_factory=list)
    align: list[str] | None = None        # "left" | "right" | "center" per column
    highlight: list[int] = field(default_factory=list)  # row indices shaded (PMTRec)
    rules: list[int] = field(default_factory=list)      # a horizontal rule above these rows
    note: str = ""
    font_size: float | None = None         # pt; None = the template's table size

    def add(self, cells: Iterable[Cell | str], *, highlight: bool = False, rule: bool = False) -> None:
        cells = [c if isinstance(c, Cell) else Cell(str(c)) for c in cells]
        if len(cells) != len(self.columns):
            raise ValueError(f"row has {len(cells)} cells, table has {len(self.columns)} columns")
        if highlight:
            self.highlight.append(len(self.rows))
        if rule:
            self.rules.append(len(self.rows))
        self.rows.append(cells)

    def to_json(self) -> dict:
        align = self.align or ["left"] + ["right"] * (len(self.columns) - 1)
        out = {"columns": self.columns, "align": align, "rows": [[c.to_json() for c in r] for r in self.rows],
               "highlight": self.highlight, "rules": self.rules, "note": self.note}
        if self.font_size:
            out["size"] = self.font_size
        return out

    def to_frame(self) -> pd.DataFrame:
        """For display in a notebook (and the CSV next to the figure): **best**, __second__."""
        return pd.DataFrame([[c.plain() for c in r] for r in self.rows], columns=self.columns)

    def text(self) -> str:
        """Every cell's text, for checks ('is this value in the table?')."""
        return " ".join(c.text for r in self.rows for c in r)


def metric_cells(means: Sequence[Any], stds: Sequence[Any], digits: int = 4, mark: bool = True) -> list[Cell]:
    """One column of mean ± std cells with the best bold and the second underlined."""
    marks = rank_marks(means, digits=digits) if mark else [None] * len(means)
    return [Cell(fmt_mean_std(m, s, digits), bold=k == "best", underline=k == "second")
            for m, s, k in zip(means, stds, marks)]
