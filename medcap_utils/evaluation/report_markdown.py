"""``reports/REPORT.md``: the summary per paper, then each notebook's figures and tables, then provenance
(notebook 09)."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from medcap_utils.evaluation.claims_report import markdown_section
from medcap_utils.evaluation.report_summary import summary_markdown
from medcap_utils.papers import NOTEBOOKS
from medcap_utils.report import markdown_table

# tables and figures named without a notebook prefix, by the notebook that writes them
_UNPREFIXED = {"metrics": "08"}
LINK_ONLY_ROWS, LINK_ONLY_COLS = 60, 16


def _notebook_of(path: Path) -> str | None:
    prefix = path.stem[:2]
    return prefix if prefix.isdigit() else _UNPREFIXED.get(path.stem)


def _table_section(path: Path, rel: str, max_rows: int, max_cols: int, max_cell: int) -> list[str]:
    """One table: its name and CSV path, at most ``max_rows`` rows (a few more when that shows it whole)
    and ``max_cols`` columns; a column holding text longer than ``max_cell`` characters is left out
    (named, whole in the CSV) rather than cut. A table too long or wide for a page (over
    ``LINK_ONLY_ROWS`` rows or ``LINK_ONLY_COLS`` columns) is only linked."""
    frame = pd.read_csv(path)
    head = f"**{path.stem}** — `{rel}`"
    if len(frame) > LINK_ONLY_ROWS or frame.shape[1] > LINK_ONLY_COLS:
        return [f"{head}: {len(frame)} rows x {frame.shape[1]} columns, in the CSV only", ""]
    long_text = [c for c in frame.columns
                 if not pd.api.types.is_numeric_dtype(frame[c]) and frame[c].astype(str).str.len().max() > max_cell]
    shown = frame.drop(columns=long_text)
    rows = len(frame) if len(frame) <= max_rows + 2 else max_rows
    notes = [f"first {rows} of {len(frame)} rows"] if rows < len(frame) else []
    if shown.shape[1] > max_cols:
        notes.append(f"first {max_cols} of {shown.shape[1]} columns")
        shown = shown.iloc[:, :max_cols]
    if long_text:
        notes.append("long text in " + ", ".join(f"`{c}`" for c in long_text) + " only in the CSV")
    head += f" ({'; '.join(notes)})" if notes else ""
    return [head, "", markdown_table(shown.head(rows)) if shown.shape[1] else "(no columns left to show)", ""]


def build_markdown_report(reports: Path, max_rows: int = 5, max_cols: int = 10, max_cell: int = 160) -> str:
    """``reports/REPORT.md``: a summary per paper first (claim, what this run measured, whether it can
    show the effect, what the real-data profile runs; :mod:`medcap_utils.evaluation.report_summary`), the claims
    table with measured verdicts (:mod:`medcap_utils.evaluation.claims_report`), then per
    notebook in order its figures and, folded, its tables (bounded, each with its CSV path), then
    the run's provenance. Used by notebook 09."""
    reports = Path(reports)
    manifest_path = reports / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    git = manifest.get("git", {})
    lines = ["# medcap report", ""]
    if manifest:
        lines += [f"Profile `{manifest.get('profile')}`, commit `{git.get('commit')}`"
                  f"{' (uncommitted changes)' if git.get('dirty') else ''}, started {manifest.get('started')}; "
                  "provenance at the end.", ""]
    lines += summary_markdown(reports, manifest.get("profile"))
    lines += [markdown_section(reports), ""]  # each paper's claims with measured verdicts (issue 17 item 5)
    tables = sorted((reports / "tables").glob("*.csv"))
    figures = sorted((reports / "figures").glob("*.png"))
    by_notebook: dict[str, list[Path]] = {}
    for path in tables + figures:
        by_notebook.setdefault(_notebook_of(path) or "other", []).append(path)
    order = sorted(k for k in by_notebook if k != "other") + (["other"] if "other" in by_notebook else [])
    for key in order:
        title = f"Notebook {key}: {NOTEBOOKS.get(key, 'outputs')}" if key != "other" else "Other outputs"
        lines += [f"## {title}", ""]
        for path in (p for p in by_notebook[key] if p.suffix == ".png"):
            lines += [f"![{path.stem}](figures/{path.name})", ""]
        csvs = [p for p in by_notebook[key] if p.suffix == ".csv"]
        if csvs:  # folded: the figures and the summary stay readable, the numbers are one click away
            lines += [f"<details><summary>{len(csvs)} table{'s' if len(csvs) > 1 else ''}: "
                      f"{', '.join(p.stem for p in csvs)}</summary>", ""]
            for path in csvs:
                lines += _table_section(path, f"tables/{path.name}", max_rows, max_cols, max_cell)
            lines += ["</details>", ""]
    if manifest:
        lines += ["## Run provenance", "",
                  f"Python {manifest.get('python')} on {manifest.get('platform')} "
                  f"({manifest.get('cpu_count')} CPUs).", ""]
        timing = pd.DataFrame(manifest.get("notebooks", []))
        if not timing.empty:
            lines += [markdown_table(timing[[c for c in ("notebook", "status", "wall_s") if c in timing]]), ""]
        versions = pd.DataFrame(sorted(manifest.get("packages", {}).items()), columns=["package", "version"])
        lines += ["<details><summary>package versions</summary>", "", markdown_table(versions), "", "</details>", ""]
    return "\n".join(lines)
