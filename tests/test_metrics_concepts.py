"""Official concept F1 on hand-computed cases, plus micro/macro and per-concept counts."""
from __future__ import annotations

import pytest
from sklearn.metrics import f1_score

from medcap_utils.evaluation.baselines import most_frequent_caption, top_k_concepts
from medcap_utils.metrics.concepts import concept_scores, f1_primary, f1_secondary, per_concept_table, per_image_f1


def test_hand_computed_primary():
    gt = {"a": ["C1", "C2"], "b": ["C3"], "c": [], "d": ["C4", "C5", "C6"]}
    pred = {"a": ["c1"], "b": [], "c": ["C9"], "d": ["C4", "C5", "C7", "C8"]}
    # a: lower-case c1 counts -> P=1, R=1/2 -> 2/3; b: empty prediction -> 0; c: empty gt -> skipped;
    # d: TP=2, |T|=3, |P|=4 -> 4/7.  Mean over 3 images.
    assert per_image_f1(gt, pred) == pytest.approx({"a": 2 / 3, "b": 0.0, "d": 4 / 7})
    assert f1_primary(gt, pred) == pytest.approx((2 / 3 + 0 + 4 / 7) / 3)


def test_matches_sklearn_binary_f1_on_union():
    gt, pred = ["C0040405", "C0817096", "C1"], ["C0040405", "C2"]
    union = sorted(set(gt) | set(pred))
    expected = f1_score([c in gt for c in union], [c in pred for c in union], average="binary")
    assert per_image_f1({"x": gt}, {"x": pred})["x"] == pytest.approx(expected)


def test_secondary_restricted_to_manual_cuis():
    manual = {"a": ["C0040405", "C0817096"], "b": ["C9999999"], "c": ["C1306645"]}
    pred = {"a": ["C0040405", "C5555555"], "b": ["C0040405"], "c": []}
    # a: non-allowed C5555555 dropped -> P=1, R=1/2 -> 2/3; b: gt has no allowed CUI -> skipped; c: 0.
    assert f1_secondary(manual, pred) == pytest.approx((2 / 3 + 0) / 2)


def test_micro_macro_and_per_concept():
    gt = {"a": ["C1", "C2"], "b": ["C1"]}
    pred = {"a": ["C1"], "b": ["C1", "C3"]}
    out = concept_scores(gt, pred)
    # pooled: TP=2 (C1 twice), FP=1 (C3), FN=1 (C2) -> micro F1 = 4/6
    assert out["scores"]["f1_micro"] == pytest.approx(4 / 6)
    # macro over CUIs in ground truth: C1 F1=1, C2 F1=0 -> 0.5
    assert out["scores"]["f1_macro"] == pytest.approx(0.5)
    table = per_concept_table(gt, pred).set_index("cui")
    assert table.loc["C1", "precision"] == 1.0 and table.loc["C3", "fp"] == 1 and table.loc["C2", "recall"] == 0.0
    assert out["counts"]["images_empty_gt"] == 0


def test_baselines():
    assert most_frequent_caption(["b", "a", "a", "b", "c"]) == "b"  # tie: first seen
    assert top_k_concepts([["C1", "c2"], ["C2"], ["C3", "C2"]], 2) == ["C2", "C1"]
    with pytest.raises(ValueError):
        most_frequent_caption([])


def test_secondary_cui_list_follows_the_year():
    """OCT (C0920367) joined the allowed list in 2025: an OCT-only image counts in 2025, not in 2024."""
    manual = {"a": ["C0920367"], "b": ["C0040405"]}
    pred = {"a": ["C0920367"], "b": ["C0920367", "C0040405"]}
    # 2025: a -> 1; b: P=1/2, R=1 -> 2/3.  2024: a has no allowed CUI -> skipped; b: OCT dropped -> 1.
    assert f1_secondary(manual, pred, year=2025) == pytest.approx((1 + 2 / 3) / 2)
    assert f1_secondary(manual, pred, year=2024) == pytest.approx(1.0)
    assert concept_scores(manual, pred, manual, year=2024)["scores"]["f1_secondary"] == pytest.approx(1.0)
    assert concept_scores(manual, pred, manual)["secondary_cuis"] == 15
    with pytest.raises(ValueError):
        f1_secondary(manual, pred, year=2019)
