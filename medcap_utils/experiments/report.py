"""Notebook ``09_report``'s steps: write ``reports/REPORT.md`` from everything the other notebooks saved, and the
part of it the notebook shows (the summary per paper, before the first notebook's section).

The report itself is built by :mod:`medcap_utils.evaluation.report_markdown` (and its summary by
:mod:`medcap_utils.evaluation.report_summary`).
"""
from __future__ import annotations

from pathlib import Path

from medcap_utils.evaluation.report_markdown import build_markdown_report

#: where the per-paper summary ends and the figures and tables by notebook begin
NOTEBOOK_SECTIONS = "## Notebook"


def write_report(reports: Path, max_rows: int) -> str:
    """Build ``REPORT.md`` in ``reports`` (tables longer than ``max_rows`` cut, their CSV named), write it and say
    where; returns its text."""
    text = build_markdown_report(reports, max_rows=max_rows)
    (reports / "REPORT.md").write_text(text)
    print(f"wrote {reports / 'REPORT.md'}: {len(text.splitlines())} lines")
    return text


def paper_summary(text: str) -> str:
    """The summary per paper at the top of the report."""
    return text.split(NOTEBOOK_SECTIONS, 1)[0]
