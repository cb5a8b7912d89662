"""What an executed notebook shows: every saved figure inline, progress bars as a few whole lines, no widgets."""
from __future__ import annotations

import json

import nbformat
import pytest

from medcap_utils.report import FIGURE_KEY, figures_not_inline
from medcap_utils.runner import reproduce

PARAMS = 'profile: str = "demo"\ndata_dir: str = "data/demo"\n'
CELLS = [
    # two figures saved in a loop, closed by the cell: only save_figure can show them
    "import matplotlib.pyplot as plt\nfrom medcap_utils.report import save_figure\n"
    "for k in range(2):\n    fig, ax = plt.subplots()\n    ax.plot([0, k])\n    save_figure(fig, f'00_loop_{k}')\n"
    "    plt.close(fig)",
    # a cell ending with save_figure: a path, and the figure once, not twice
    "fig, ax = plt.subplots()\nax.plot([1, 0])\nsave_figure(fig, '00_last')",
    # bars of medcap and of a library (tqdm.auto), as the training loop and transformers build them
    "import time\nfrom tqdm.auto import tqdm as library_tqdm\nfrom medcap_utils.progress import progress_mode, tqdm\n"
    "print(progress_mode())\n"
    "for _ in tqdm(range(300), desc='epoch 1/1', delay=0, mininterval=0, line_interval=0.2):\n    time.sleep(0.002)\n"
    "for _ in library_tqdm(range(3000), desc='Loading weights', mininterval=0, miniters=1):\n    pass",
]


def _outputs(cell) -> list:
    return cell.get("outputs", [])


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """A one-notebook repository run by the project's runner (papermill, the kernel environment of make reproduce)."""
    root = tmp_path_factory.mktemp("repo")
    (root / "notebooks").mkdir()
    (root / "configs").mkdir()
    (root / "configs" / "demo.yaml").write_text("defaults: {profile: demo, data_dir: data/demo}\n")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell(PARAMS)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# t"), params, *map(nbformat.v4.new_code_cell, CELLS)]
    nbformat.write(nb, root / "notebooks" / "00_figures.ipynb")
    assert reproduce.run("demo", root=root) == 0
    return root / "reports"


@pytest.mark.slow
def test_every_saved_figure_is_an_image_output(executed):
    cells = json.loads((executed / "notebooks" / "00_figures.ipynb").read_text())["cells"]
    shown = [o["metadata"].get(FIGURE_KEY) for c in cells for o in _outputs(c) if "image/png" in o.get("data", {})]
    assert shown == ["00_loop_0.png", "00_loop_1.png", "00_last.png"]  # each once, in order, named
    assert sorted(p.name for p in (executed / "figures").glob("*.png")) == sorted(shown)
    assert figures_not_inline(executed) == []
    assert json.loads((executed / "manifest.json").read_text())["figures_not_inline"] == []


@pytest.mark.slow
def test_progress_bars_are_a_few_whole_lines(executed):
    cell = json.loads((executed / "notebooks" / "00_figures.ipynb").read_text())["cells"][-1]
    outputs = _outputs(cell)
    assert not any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs)
    text = "".join(o["text"] if isinstance(o["text"], str) else "".join(o["text"])
                   for o in outputs if o["output_type"] == "stream")
    assert text.startswith("lines\n") and "\r" not in text and "IProgress" not in text
    bars = text.splitlines()[1:]
    assert 1 <= len(bars) <= 11 and bars[-1].startswith("epoch 1/1: 100%"), bars  # the library's quick bar: none


def test_a_figure_saved_but_not_shown_is_named(tmp_path):
    (tmp_path / "figures").mkdir()
    (tmp_path / "notebooks").mkdir()
    for name in ("03_a.png", "03_b.png", "04_other.png"):
        (tmp_path / "figures" / name).write_bytes(b"png")
    nb = nbformat.v4.new_notebook()
    shown = nbformat.v4.new_output("display_data", data={"image/png": "iVBOR"}, metadata={FIGURE_KEY: "03_a.png"})
    nb.cells = [nbformat.v4.new_code_cell("save_figure(...)", outputs=[shown])]
    nbformat.write(nb, tmp_path / "notebooks" / "03_x.ipynb")
    problems = figures_not_inline(tmp_path)
    assert len(problems) == 1 and "03_x.ipynb" in problems[0] and "03_b.png" in problems[0], problems
    # a figure left open and drawn by the inline backend at the end of its cell counts for a file saved otherwise
    nb.cells.append(nbformat.v4.new_code_cell("fig.savefig(...)", outputs=[
        nbformat.v4.new_output("display_data", data={"image/png": "iVBOR"})]))
    nbformat.write(nb, tmp_path / "notebooks" / "03_x.ipynb")
    assert figures_not_inline(tmp_path) == []
