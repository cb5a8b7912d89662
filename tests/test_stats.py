"""Dataset statistics on the real ROCOv2 rows (numbers also stated in ../shared/reference.md)."""
from __future__ import annotations

import pandas as pd
import pytest

from medcap_utils.data import modality_of, split_frame
from medcap_utils.data import statistics as stats


@pytest.fixture(scope="module")
def sample_frames(sample_dir):
    return {"test": split_frame(sample_dir, "test")}  # the sample keeps the ROCOv2 file names


def test_caption_lengths_of_real_rows(sample_frames):
    table = stats.caption_length_summary(sample_frames).set_index("unit")
    words = table.loc["words"]
    assert words["images"] == 93
    assert words["median"] == 16 and round(words["mean"], 1) == 20.3 and words["max"] == 73
    chars = sample_frames["test"]["caption"].str.len()
    assert table.loc["chars", "max"] == chars.max() and table.loc["chars", "mean"] == pytest.approx(chars.mean())


def test_modality_distribution_sums_and_unknown(sample_frames):
    table = stats.modality_distribution(sample_frames)
    assert table["images"].sum() == 93 and table["share"].sum() == pytest.approx(1.0)
    by_name = dict(zip(table["modality"], table["images"]))
    expected_ct = sum(1 for c in sample_frames["test"]["cuis"] if modality_of(c) == "CT")
    assert by_name["CT"] == expected_ct and expected_ct > 0
    assert by_name.get("unknown", 0) == sum(1 for c in sample_frames["test"]["cuis"] if modality_of(c) is None)


def test_concepts_per_image_and_top_concepts(sample_frames):
    per_image = stats.concepts_per_image(sample_frames)
    assert dict(zip(per_image["n_concepts"], per_image["images"]))[4] == 22  # counted from the CSV by hand
    top = stats.top_concepts(sample_frames, {"C0040405": "X-Ray Computed Tomography"}, k=3)
    assert top.loc[0, "cui"] == "C0040405" and top.loc[0, "name"] == "X-Ray Computed Tomography"
    assert list(top["images"]) == sorted(top["images"], reverse=True)


def test_vocabulary_counts_tokens():
    frames = {"train": pd.DataFrame({"caption": ["CT of the chest", "MRI of the brain"]}),
              "test": pd.DataFrame({"caption": ["CT of the knee 12"]})}
    table = stats.vocabulary(frames).set_index("split")
    assert table.loc["train", "vocabulary"] == 6 and table.loc["train", "tokens"] == 8
    assert table.loc["test", "token_coverage_by_train"] == pytest.approx(3 / 5)
