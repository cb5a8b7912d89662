"""Showing tables of captions in notebooks without cutting them.

pandas shows at most 50 characters of a cell by default, so a caption table in a notebook ends
mid-word. :func:`show_full` displays every cell in full; HTML output (JupyterLab, Colab, the executed
notebooks) wraps long text inside its cell. Used by notebooks 02, 03, 06 and 07.
"""
from __future__ import annotations

import pandas as pd


def show_full(frame: pd.DataFrame) -> None:
    """Display ``frame`` with the text of every cell in full (no 50-character cut, no ellipsis)."""
    from IPython.display import display

    with pd.option_context("display.max_colwidth", None, "display.width", 200):
        display(frame)
