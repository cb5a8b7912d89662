"""The results explorer on a tiny fixture: its data layer (pandas only) and its widgets (plain Python, no browser)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medcap_utils.analysis.attention_maps import read_attention_map, write_attention_maps
from medcap_utils.explorer.data import ExplorerData
from medcap_utils.testing.explorer_fixture import CAPTION_RUNS, CONCEPT_RUN, write_explorer_fixture

FIRST, SECOND = "ROCOv2_2023_test_000001", "ROCOv2_2023_test_000002"


@pytest.fixture(scope="module")
def fixture(tmp_path_factory):
    return write_explorer_fixture(tmp_path_factory.mktemp("explorer"))


@pytest.fixture(scope="module")
def data(fixture):
    return ExplorerData(fixture.reports, fixture.data)


def test_runs_splits_and_images(data, fixture):
    assert data.splits() == ["test", "valid"]
    assert data.runs_of("test", "captions") == ["baseline-most-frequent-caption", "blip_demo_test", "xai-lstm-demo"]
    assert data.runs_of("test", "concepts") == ["medcsra-demo-test"]
    assert data.images("test") == fixture.ids["test"] and data.images("valid") == fixture.ids["valid"]
    assert data.split_of("ROCOv2_2023_valid_000002") == "valid"
    assert not data.problems


def test_worst_orders_by_the_metric(data):
    scores = data.scores("blip_demo_test")
    assert data.metrics("blip_demo_test")[0] == "imageclef2024:rouge1"
    worst = data.worst("blip_demo_test", "imageclef2024:rouge1", 3)
    expected = scores["imageclef2024:rouge1"].sort_values(kind="mergesort").index[:3].tolist()
    assert worst.ID.tolist() == expected and worst.value.is_monotonic_increasing
    assert worst.ID.iloc[0] == "ROCOv2_2023_test_000003"  # "a mass in the left hemisphere" for a normal brain MRI
    tied = data.worst("xai-lstm-demo", "imageclef2024:rouge1", 4)  # ties broken by ID
    assert list(tied.value) == sorted(tied.value)
    for value in set(tied.value):
        ids = tied.ID[tied.value == value].tolist()
        assert ids == sorted(ids)
    assert data.worst("medcsra-demo-test", "concepts:f1_primary", 1).ID.tolist() == [FIRST]  # F1 4/7, others >= 2/3
    assert data.worst("blip_demo_test", "no:such", 3).empty


def test_view_has_every_run_caption_and_scores(data):
    first, second = data.view(FIRST), data.view(SECOND)
    assert first.reference.startswith("Chest X-ray") and second.reference.startswith("Axial CT")
    assert [c.run for c in first.captions] == data.runs_of("test", "captions")
    for run in ("blip_demo_test", "xai-lstm-demo"):
        a = next(c for c in first.captions if c.run == run)
        b = next(c for c in second.captions if c.run == run)
        assert a.caption == CAPTION_RUNS[run][1][FIRST] and a.caption != b.caption
        assert a.scores["imageclef2024:rouge1"] == pytest.approx(data.scores(run).loc[FIRST, "imageclef2024:rouge1"])
    assert first.image_source.endswith(f"{FIRST}.jpg") and data.image_bytes(first)[:2] == b"\xff\xd8"


def test_concepts_true_false_missed(data):
    view = data.view(FIRST)
    check = view.concept_runs[0]
    assert check.run == CONCEPT_RUN[0]
    assert check.true_positives == ["C1306645", "C0817096"]
    assert check.false_positives == ["C0577559"]
    assert check.missed == ["C0024109", "C0028259"]
    assert view.name("C0028259") == "Nodule"
    # F1 of the fixture's per-image file: 2 * 2 / (4 + 3)
    assert check.scores["concepts:f1_primary"] == pytest.approx(4 / 7)


def test_attention_present_and_missing(data, tmp_path):
    view = data.view(FIRST)
    amap = view.attention["xai-lstm-demo"]
    assert amap.tokens == CAPTION_RUNS["xai-lstm-demo"][1][FIRST].split()
    assert amap.maps.shape == (len(amap.tokens), 8, 8)
    assert view.attention["blip_demo_test"] is None  # no map for this run
    assert data.view(SECOND).attention["xai-lstm-demo"] is None  # the run has maps, not for this image
    assert data.attention_images("xai-lstm-demo") == [FIRST]
    with pytest.raises(ValueError):
        write_attention_maps(tmp_path, ["x"], [["a", "b"]], [np.zeros((1, 2, 2))], "test")
    write_attention_maps(tmp_path, ["x"], [["a"]], [np.ones((2, 2, 2))], "test")  # <end> step dropped
    assert read_attention_map(tmp_path, "x").maps.shape == (1, 2, 2) and read_attention_map(tmp_path, "y") is None


def test_scores_computed_when_no_run_was_scored(fixture, tmp_path):
    """A run that notebook 08 has not scored yet gets ROUGE-1 / F1 from the project's metric code."""
    import shutil

    reports = tmp_path / "reports"
    shutil.copytree(fixture.reports, reports)
    for folder in reports.glob("runs/*/eval_*"):
        shutil.rmtree(folder)
    fresh = ExplorerData(reports, fixture.data)
    scored = ExplorerData(fixture.reports, fixture.data)
    computed = fresh.scores("blip_demo_test")["explorer:rouge1"]
    pd.testing.assert_series_equal(computed, scored.scores("blip_demo_test")["imageclef2024:rouge1"], check_names=False)
    f1 = fresh.scores("medcsra-demo-test")["explorer:f1_primary"]
    pd.testing.assert_series_equal(f1, scored.scores("medcsra-demo-test")["concepts:f1_primary"], check_names=False)


def test_reference_falls_back_to_the_score_files(fixture):
    """Without the data folder (a copied reports folder), references come from the per-image files."""
    data = ExplorerData(fixture.reports, fixture.root / "nowhere")
    assert data.view(FIRST).reference.startswith("Chest X-ray")
    assert data.view(FIRST).image_source is None


def test_widget_changes_with_the_image(fixture):
    from medcap_utils.explorer.app import NO_MAP, explore

    explorer = explore(reports=fixture.reports, data_dir=fixture.data)
    assert explorer.image.value == FIRST and "Chest X-ray" in explorer.reference.value
    assert repr(explorer).startswith("<results explorer: 5 runs, image ROCOv2_2023_test_000001")
    assert CAPTION_RUNS["blip_demo_test"][1][FIRST] in explorer.captions.value
    assert explorer.attention_run.value == "xai-lstm-demo" and explorer.attention.value[:4] == b"\x89PNG"
    assert "found:" in explorer.concepts.value and "Nodule" in explorer.concepts.value
    before = explorer.captions.value
    explorer.image.value = SECOND
    assert "Axial CT" in explorer.reference.value and explorer.captions.value != before
    assert CAPTION_RUNS["blip_demo_test"][1][SECOND] in explorer.captions.value
    assert explorer.slider.value == 1
    assert "1 other image, not this one" in explorer.attention_note.value  # xai-lstm-demo has maps, not for this image
    explorer.attention_run.value = "blip_demo_test"
    assert NO_MAP in explorer.attention_note.value
    explorer.slider.value = 3
    assert explorer.image.value == fixture.ids["test"][3]
    explorer.worst_run.value = "blip_demo_test"
    explorer.worst_metric.value = "imageclef2024:rouge1"
    assert explorer.worst_list.options[0][1] == "ROCOv2_2023_test_000003"
    explorer.worst_list.value = "ROCOv2_2023_test_000003"
    assert explorer.image.value == "ROCOv2_2023_test_000003" and "Sagittal MRI" in explorer.reference.value
    explorer.split.value = "valid"
    assert explorer.image.value == "ROCOv2_2023_valid_000001" and "left lung" in explorer.reference.value
    assert explorer.attention_run.options == ("decoding_blip_base_greedy",)
