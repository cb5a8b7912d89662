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


#: key of an image output's metadata naming the file under ``reports/figures/`` it shows
FIGURE_KEY = "medcap_figure"


def save_figure(fig, name: str, dpi: int = 120) -> Path:
    """Write ``reports/figures/<name>.png`` (tight bounding box) and return its path.

    In a Jupyter kernel with the inline backend (JupyterLab, Colab, and the kernels ``make reproduce`` starts)
    the file is also shown, as an image output tagged with its name (:data:`FIGURE_KEY`), and the figure is
    closed so the backend does not show it a second time at the end of the cell: every saved figure appears in
    the executed notebook, whatever the cell ends with, even when it saves several in a loop."""
    path = reports_dir("figures") / f"{name}.png"
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    if _inline_backend():
        import matplotlib.pyplot as plt
        from IPython.display import Image, display

        display(Image(data=path.read_bytes(), format="png"), metadata={FIGURE_KEY: path.name})
        plt.close(fig)
    return path


def _inline_backend() -> bool:
    """Whether this is a Jupyter kernel drawing matplotlib figures inline."""
    import sys

    matplotlib = sys.modules.get("matplotlib")
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if matplotlib is None or shell is None or "IPKernelApp" not in shell.config:
        return False
    return "inline" in matplotlib.get_backend().lower()


def figures_not_inline(reports: Path) -> list[str]:
    """Executed notebooks in ``<reports>/notebooks`` that show fewer figures than they saved, one message each.

    A notebook ``NN_*.ipynb`` saved the files ``<reports>/figures/NN_*.png``. Each must be shown: by an image
    output tagged with its name (:func:`save_figure`), or, for a file saved another way, by one of the
    untagged image outputs (a figure left open, drawn by the inline backend at the end of its cell)."""
    import json

    problems = []
    for path in sorted((reports / "notebooks").glob("*.ipynb")):
        if path.name[2:3] != "_":
            continue
        prefix = path.name[:3]  # "03_": the notebook's number names its figures
        saved = sorted(p.name for p in (reports / "figures").glob(prefix + "*.png"))
        if not saved:
            continue
        images = [o for c in json.loads(path.read_text())["cells"] for o in c.get("outputs", [])
                  if "image/png" in o.get("data", {})]
        tagged = {o.get("metadata", {}).get(FIGURE_KEY) for o in images} - {None}
        untagged = sum(FIGURE_KEY not in o.get("metadata", {}) for o in images)
        missing = [name for name in saved if name not in tagged]
        if len(missing) > untagged:
            problems.append(f"{path.name}: saved {len(saved)} figures, shows {len(images)} images; not shown "
                            f"(by name): {missing}" + (f", {untagged} untagged images" if untagged else ""))
    return problems


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
