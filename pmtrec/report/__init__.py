"""The PMTRec report: figures, tables and readings from the workflow's aggregated tables.

Modules: :mod:`~pmtrec.report.style` (one colour per method, seaborn theme, SVG output),
:mod:`~pmtrec.report.data` (table loading with one-line :class:`ReportError`),
:mod:`~pmtrec.report.tables` (mean ± std, best bold, second underlined, significance markers),
one module per report section (datasets, comparison, personalization, dynamics, sensitivity,
efficiency), :mod:`~pmtrec.report.section` (what a notebook writes),
:mod:`~pmtrec.report.execute` (papermill runner) and :mod:`~pmtrec.report.build` (the typst PDF).
See docs/report.md.
"""

from pmtrec.report.data import ReportError, load_table
from pmtrec.report.section import Section

__all__ = ["ReportError", "load_table", "Section"]
