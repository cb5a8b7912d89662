"""Progress bars: widgets only where a front end draws them, whole lines elsewhere (medcap_utils.progress)."""
from __future__ import annotations

import io
import os
import subprocess
import sys

import nbformat
import pytest

from medcap_utils import progress


def test_terminal_gets_tqdms_bar_and_the_variable_decides(monkeypatch):
    monkeypatch.delenv(progress.ENV, raising=False)
    assert progress.progress_mode() == "bar"
    monkeypatch.setenv(progress.ENV, "widgets")
    assert progress.progress_mode() == "widgets"
    monkeypatch.setenv(progress.ENV, "sideways")
    with pytest.raises(ValueError, match="MEDCAP_PROGRESS"):
        progress.progress_mode()
    monkeypatch.setenv(progress.ENV, "off")
    assert progress.tqdm(range(3)).disable


def test_line_bar_writes_at_most_eleven_whole_lines():
    out = io.StringIO()
    bar = progress.LineBar(range(5000), file=out, delay=0, mininterval=0, miniters=1, line_interval=0, desc="epoch 1/1")
    for _ in bar:
        pass
    text = out.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert 2 <= len(lines) <= 11, lines
    assert lines[-1].startswith("epoch 1/1: 100%") and all(line.startswith("epoch 1/1") for line in lines)


def test_a_quick_bar_leaves_no_trace():
    out = io.StringIO()
    for _ in progress.LineBar(range(100), file=out, leave=False, desc="cache"):
        pass
    assert out.getvalue() == ""


def _flood(path, first_line: str):
    """One cell of 40,000 tqdm.auto updates: ~80,000 widget messages when tqdm.auto picks widgets."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(f"{first_line}\nfrom tqdm.auto import tqdm\n"
                                          "for _ in tqdm(range(40000), mininterval=0, miniters=1):\n    pass")]
    nbformat.write(nb, path)


@pytest.mark.slow
def test_nbval_survives_a_bar_flood_once_medcap_is_imported(tmp_path):
    """The failure of issue 15, made certain: with ipywidgets installed, nbval loses the cell's idle status among
    dropped IOPub messages ("Timeout of 5 seconds exceeded waiting for output"); importing medcap_utils turns the
    same bar into lines. The control notebook shows the test can fail."""
    pytest.importorskip("ipywidgets")
    pytest.importorskip("nbval")
    _flood(tmp_path / "medcap_flood.ipynb", "import medcap_utils")
    _flood(tmp_path / "plain_flood.ipynb", "")
    env = {k: v for k, v in os.environ.items() if k not in (progress.ENV, "JPY_SESSION_NAME")}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax", "-rA",
                          str(tmp_path / "medcap_flood.ipynb"), str(tmp_path / "plain_flood.ipynb")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    out = run.stdout + run.stderr
    assert "PASSED medcap_flood.ipynb::Cell 0" in out, out[-3000:]
    assert "FAILED plain_flood.ipynb::Cell 0" in out and "Timeout of 5 seconds exceeded waiting for output" in out, \
        out[-3000:]
