"""Committed notebooks carry no outputs and follow the house shape: an H1 title with the Colab badge, the Colab setup
cell as the first code cell, then exactly one parameters cell."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from medcap_utils.runner import colab

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_there_are_numbered_notebooks():
    assert [p.name[:2] for p in NOTEBOOKS][:2] == ["00", "01"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_clean(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), \
        "strip outputs before committing"
    first = "".join(nb["cells"][0]["source"])
    assert nb["cells"][0]["cell_type"] == "markdown" and first.startswith("# "), "H1 title first"
    assert colab.badge(path.name) in first, "the title cell carries the Colab badge (`make badges`)"
    assert code[0]["metadata"].get("tags") == [colab.SETUP_TAG], "the Colab setup cell is the first code cell"
    tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1 and code[1] is tagged[0], "exactly one cell tagged `parameters`, right after the setup cell"
    params = "".join(tagged[0]["source"])
    assert 'profile: str = "demo"' in params and "data_dir: str" in params


def test_papermill_reads_every_parameter():
    """papermill's own parser stops at comments it cannot read (an ``=`` after a quote, say) and then warns
    "Passed unknown parameter" for values it injects; every declared name must survive its parser."""
    from papermill.translators import PythonTranslator

    from medcap_utils.runner.reproduce import declared_parameters, numbered_notebooks

    for path in numbered_notebooks(NOTEBOOKS[0].parent):
        cell = next(c for c in json.loads(path.read_text())["cells"] if "parameters" in c["metadata"].get("tags", []))
        seen = [p.name for p in PythonTranslator.inspect({"source": "".join(cell["source"])})]
        assert seen == declared_parameters(path), path.name
