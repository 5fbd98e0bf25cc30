"""Results people look at: ``report.html`` of a run (:func:`write_report`), paired significance
tests between systems (:mod:`promptweave.report.compare`), and the headline numbers
(:mod:`promptweave.report.numbers`) that ``report.md`` and the terminal summary share."""

from __future__ import annotations

from .build import render_html, write_report
from .rundata import Run, load_run

__all__ = ["Run", "load_run", "render_html", "write_report"]
