"""Report tables: mean ± std cells, best bold / second underlined, significance markers.

A :class:`Table` is data (cell text plus flags), not markup: the PDF template
(pmtrec/report/template.typ) renders it from JSON, the notebooks show it as a DataFrame
(``**best**``, ``__second__``), :meth:`Table.to_latex` writes it as a booktabs tabular, and its
``data`` (the numbers behind the cells, one column per value) is what the section saves as CSV.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import pandas as pd

__all__ = ["Cell", "Table", "fmt_num", "fmt_mean_std", "fmt_pct", "rank_marks", "sig_marker", "SIG_NOTE",
           "deterministic_note", "rank_flags"]

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


# A std this small is rounding noise of identical values (the std of [a, a, a] can be 7e-18).
ZERO_STD = 1e-12


def fmt_mean_std(mean: Any, std: Any, digits: int = 4) -> str:
    """'0.1234 ± 0.0056'; the mean alone when the std is undefined (one seed) or zero (a method
    that gives the same result on every seed, e.g. MostPop: '± 0.0000' would be a fake interval);
    '± <0.0001' for a real spread below the shown precision."""
    if _nan(mean):
        return "–"
    if _nan(std) or abs(float(std)) <= ZERO_STD:
        return fmt_num(mean, digits)
    if round(float(std), digits) == 0:
        return f"{fmt_num(mean, digits)} ± <{10.0 ** -digits:.{digits}f}"
    return f"{fmt_num(mean, digits)} ± {fmt_num(std, digits)}"


def rank_flags(d: pd.DataFrame, by: list[str], digits: int = 4) -> pd.DataFrame:
    """``best`` / ``second`` boolean columns per ``by`` group of a ``mean`` column, as
    :func:`rank_marks` marks the cells (higher is better; ties at the shown precision share)."""
    values = d["mean"] if digits is None else d["mean"].round(digits)
    r = values.groupby([d[b] for b in by]).rank(method="dense", ascending=False)
    return d.assign(best=r == 1, second=r == 2)


def deterministic_note(names: Iterable[str]) -> str:
    """The note sentence for rows whose spread over seeds is exactly zero ('' when none)."""
    names = list(dict.fromkeys(names))
    if not names:
        return ""
    return (f" {', '.join(names)}: the same result on every seed (deterministic), so no ± is shown.")


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
    data: pd.DataFrame | None = None       # the numbers behind the cells (the section's CSV)

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

    def to_latex(self, comment: str = "") -> str:
        """A booktabs tabular (``\\usepackage{booktabs}``) of the displayed cells: bold, underline,
        italic and the significance superscripts kept; ``comment`` (caption, note) as ``%`` lines."""
        n = len(self.columns)
        # a (label, position) header keeps repeated labels ("× EW" twice) unique for Styler.apply
        cols = pd.MultiIndex.from_arrays([self.columns, range(n)])
        frame = pd.DataFrame([[c.text for c in r] for r in self.rows], columns=cols, dtype=object)
        styles = pd.DataFrame([[_latex_style(c) for c in r] for r in self.rows], columns=cols, dtype=object)
        st = (frame.style.hide(axis="index").hide(axis="columns", level=1)
              .format(_tex_symbols, escape="latex").format_index(_tex_symbols, escape="latex", axis=1)
              .apply(lambda _: styles, axis=None))
        for i, row in enumerate(self.rows):
            for j, c in enumerate(row):
                if c.sup:  # escape first, then the marker as a superscript (format runs after escaping)
                    st = st.format(lambda v, s=c.sup: f"{_tex_symbols(v)}\\textsuperscript{{{s}}}",
                                   subset=pd.IndexSlice[[i], [cols[j]]], escape="latex")
        align = "".join({"left": "l", "center": "c"}.get(a, "r")
                        for a in (self.align or ["left"] + ["right"] * (n - 1)))
        lines = st.to_latex(hrules=True, column_format=align, sparse_columns=False).splitlines()
        body = lines.index("\\midrule") + 1
        for k in sorted(self.rules, reverse=True):  # the rules the PDF draws above some rows
            if 0 < k < len(self.rows):
                lines.insert(body + k, "\\midrule")
        head = [f"% {ln}" for ln in comment.splitlines() if ln.strip()]
        return "\n".join(head + lines) + "\n"


# Unicode the cells use -> LaTeX that pdflatex also typesets (after Styler's escaping).
_TEX = {"±": "$\\pm$", "×": "$\\times$", "Δ": "$\\Delta$", "τ": "$\\tau$", "≤": "$\\leq$", "≥": "$\\geq$",
        "–": "--", "†": "\\dag{}", "’": "'", "·": "$\\cdot$", "α": "$\\alpha$"}


def _tex_symbols(text: Any) -> str:
    text = str(text)
    for k, v in _TEX.items():
        text = text.replace(k, v)
    return text


def _latex_style(c: Cell) -> str:
    """Styler's LaTeX commands for one cell ('--rwrap': wrap the value in braces)."""
    return "".join(f"{cmd}: --rwrap;" for on, cmd in ((c.bold, "textbf"), (c.underline, "underline"),
                                                       (c.italic, "textit")) if on)


def metric_cells(means: Sequence[Any], stds: Sequence[Any], digits: int = 4, mark: bool = True) -> list[Cell]:
    """One column of mean ± std cells with the best bold and the second underlined."""
    marks = rank_marks(means, digits=digits) if mark else [None] * len(means)
    return [Cell(fmt_mean_std(m, s, digits), bold=k == "best", underline=k == "second")
            for m, s, k in zip(means, stds, marks)]
