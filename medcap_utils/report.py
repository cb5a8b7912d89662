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
