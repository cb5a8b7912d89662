"""What the rocov2 smoke run (``make smoke``) must have produced: run by the Makefile after the run with
``--smoke-reports build/rocov2-smoke/reports``; skipped in the plain unit-test pass."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from medcap_utils.handoff import handoff


@pytest.fixture(scope="module")
def reports(request) -> Path:
    path = request.config.getoption("--smoke-reports")
    if not path:
        pytest.skip("no --smoke-reports: `make smoke` runs this after the smoke run")
    return Path(path).resolve()


@pytest.fixture(scope="module")
def manifest(reports) -> dict:
    return json.loads((reports / "manifest.json").read_text())


def test_every_notebook_ran_through_the_rocov2_code_path(manifest):
    assert manifest["status"] == "ok", [n for n in manifest["notebooks"] if n["status"] != "ok"]
    assert [n["notebook"][:2] for n in manifest["notebooks"]] == [f"{k:02d}" for k in range(10)]
    assert {n["parameters"]["profile"] for n in manifest["notebooks"]} == {"rocov2"}


def test_every_hub_id_resolved_from_the_local_cache(manifest):
    """Each id the profile names has a cached revision, except those the stand-in cache says it cannot hold
    (BLEURT without bleurt-pytorch), which notebook 08 reports as unavailable."""
    from medcap_utils.testing.local_hub import not_stood_in

    hub = manifest["hub"]
    assert "Salesforce/blip-image-captioning-base" in hub and "facebook/opt-2.7b" in hub
    missing = {hub_id for hub_id, rev in hub.items() if rev is None}
    assert missing == set(not_stood_in()) & set(hub), missing
    assert all(len(rev) == 40 for rev in hub.values() if rev is not None), hub


def test_models_02_wrote_are_where_03_and_04_read_them(reports, monkeypatch):
    monkeypatch.setenv("MEDCAP_REPORTS", str(reports))
    h = handoff("rocov2")
    for name in h.writes("02_blip_finetuning"):
        assert (h.model(name) / "model.safetensors").exists(), name
    for notebook in ("03_medblip_ablation", "04_decoding_experiments"):
        for role, path in h.reads(notebook).items():
            assert (path / "config.json").exists(), (notebook, role, path)
    grid = pd.read_csv(reports / "tables" / "04_decoding_grid.csv")
    assert set(grid["model"]) == {"blip_base", "blip_large"} and len(grid) == 10


def test_zero_shot_is_labelled_zero_shot(reports):
    table = pd.read_csv(reports / "tables" / "02_blip_test.csv")
    assert any(m.startswith("zero-shot (Salesforce/blip-image-captioning-base)") for m in table["model"])
    assert not any("untrained" in m for m in table["model"])


def test_notebook_08_scored_every_run(reports):
    runs = sorted(p.parent.name for p in (reports / "runs").glob("*/run.json"))
    metrics = pd.read_csv(reports / "tables" / "metrics.csv")
    assert len(runs) >= 15
    assert set(metrics["run"]) == set(runs)
    scored = metrics[metrics["status"].isin(["ok", "partial"])]
    assert set(scored["run"]) == set(runs), set(runs) - set(scored["run"])


def test_every_saved_figure_is_shown_inline(reports):
    """A student opening an executed notebook sees its figures: each figure file a notebook saved is also an image
    output of that notebook (save_figure shows it, tagged with its name, in the kernels the runner starts)."""
    from medcap_utils.report import figures_not_inline

    assert figures_not_inline(reports) == []
    assert json.loads((reports / "manifest.json").read_text()).get("figures_not_inline", []) == []
