"""configs/handoff.yaml: every model a notebook reads is written by an earlier notebook of the same
profile, the names resolve under the reports root, and the notebooks ask the table instead of naming folders."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from medcap_utils.handoff import HandoffError, handoff

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("profile", ["demo", "rocov2", "rocov2-smoke"])
def test_reads_follow_writes(profile):
    h = handoff(profile)
    written: set[str] = set()
    for notebook in sorted(h.notebooks):
        for role, name in h.notebooks[notebook].get("reads", {}).items():
            assert name.split("/")[0] in written, (f"{profile}: {notebook} reads {role}={name} "
                                                   "before any notebook writes it")
        written |= set(h.writes(notebook))
    assert set(h.models) == written, "a model folder nobody writes, or one written but not named"


@pytest.mark.parametrize("profile", ["demo", "rocov2"])
def test_both_profiles_train_what_seed_000_and_002_need(profile):
    """Notebook 04 compares notebook 02's 2Q2T base and large in the demo exactly as in rocov2 (issue 17: the demo's
    "base" was once notebook 03's full fine-tune, trained with other settings)."""
    h = handoff(profile)
    assert {"blip_2q2t_base", "blip_2q2t_large", "blip_uit_oggy_large"} <= set(h.writes("02_blip_finetuning"))
    reads = h.reads("04_decoding_experiments")
    assert reads["base"] == h.model("blip_2q2t_base") and reads["large"] == h.model("blip_2q2t_large")


def test_names_resolve_under_the_reports_root_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert handoff("rocov2").model("medblip") == REPO / "reports" / "models" / "medblip-rocov2"
    monkeypatch.setenv("MEDCAP_REPORTS", str(tmp_path / "elsewhere"))
    assert handoff("rocov2").model("medblip/full") == tmp_path / "elsewhere" / "models" / "medblip-rocov2" / "full"


def test_unknown_name_is_a_clear_error():
    with pytest.raises(HandoffError, match="profile 'rocov2' has no model 'blip_rocov2'.*known"):
        handoff("rocov2").model("blip_rocov2")


def test_notebooks_name_no_model_folder_themselves():
    """Model folders come from the table; a literal reports/models path in a notebook is how 02, 03 and 04
    came to disagree."""
    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        nb = json.loads(path.read_text())
        code = "".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
        assert "reports/models" not in code, path.name
