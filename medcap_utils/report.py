"""Saving what notebooks show: tables to ``reports/tables/*.csv``, figures to ``reports/figures/*.png``.

Used by every notebook, so each number and plot a notebook displays also exists as a file.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from medcap_utils.paths import reports_dir


def save_table(frame: pd.DataFrame, name: str, index: bool = False) -> Path:
    """Write ``reports/tables/<name>.csv`` and return its path."""
    path = reports_dir("tables") / f"{name}.csv"
    frame.to_csv(path, index=index)
    return path


def save_figure(fig, name: str, dpi: int = 120) -> Path:
    """Write ``reports/figures/<name>.png`` (tight bounding box) and return its path."""
    path = reports_dir("figures") / f"{name}.png"
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


def markdown_table(frame: pd.DataFrame, floatfmt: str = ".4g") -> str:
    """A GitHub-flavoured markdown table (no extra dependency)."""
    def cell(value) -> str:
        if isinstance(value, float):
            return "" if value != value else format(value, floatfmt)
        return str(value).replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def build_markdown_report(reports: Path, max_rows: int = 30) -> str:
    """``reports/REPORT.md``: the run's provenance, then every table and figure the notebooks wrote,
    grouped by the notebook that made them (file-name prefix). Used by notebook 09."""
    import json

    lines = ["# medcap report", ""]
    manifest_path = reports / "manifest.json"
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        git = manifest.get("git", {})
        lines += [f"Profile `{manifest.get('profile')}`, commit `{git.get('commit')}`"
                  f"{' (uncommitted changes)' if git.get('dirty') else ''}, started {manifest.get('started')}, "
                  f"Python {manifest.get('python')} on {manifest.get('platform')} ({manifest.get('cpu_count')} CPUs).", ""]
        timing = pd.DataFrame(manifest.get("notebooks", []))
        if not timing.empty:
            lines += ["## Notebooks", "", markdown_table(timing[[c for c in ("notebook", "status", "wall_s") if c in timing]]), ""]
        versions = pd.DataFrame(sorted(manifest.get("packages", {}).items()), columns=["package", "version"])
        lines += ["<details><summary>package versions</summary>", "", markdown_table(versions), "", "</details>", ""]
    tables = sorted((reports / "tables").glob("*.csv"))
    figures = sorted((reports / "figures").glob("*.png"))
    prefixes = sorted({p.name[:2] for p in tables + figures})
    for prefix in prefixes:
        lines += [f"## Notebook {prefix}", ""]
        for path in (p for p in tables if p.name.startswith(prefix)):
            frame = pd.read_csv(path)
            more = f" (first {max_rows} of {len(frame)} rows)" if len(frame) > max_rows else ""
            lines += [f"**{path.stem}**{more} — `tables/{path.name}`", "", markdown_table(frame.head(max_rows)), ""]
        for path in (p for p in figures if p.name.startswith(prefix)):
            lines += [f"![{path.stem}](figures/{path.name})", ""]
    return "\n".join(lines)
