"""ImageCLEF protocol pieces: preprocessing, ROUGE-1, both-empty rule, combined scores."""
from __future__ import annotations

import numpy as np
import pytest
from rouge_score import rouge_scorer

from medcap_utils.metrics.imageclef import combine, evaluate_imageclef, preprocess
from medcap_utils.metrics.modality import modality_mention_rate


def test_preprocess_like_the_organisers():
    assert preprocess("CT, 2nd day (Fig. 3A): 12.5 mm!") == "ct numbernd day fig numbera numbernumber mm"
    assert preprocess("Day 26Follow-up “arrow” — x") == "day numberfollowup “arrow” — x"  # unicode kept
    assert preprocess("...") == ""


def test_rouge1_matches_rouge_score_and_both_empty_is_one(sample_dir):
    from medcap_utils.data.rocov2 import read_captions

    df = read_captions(sample_dir / "test_captions.csv")
    gt = list(df.Caption)
    cand = [" ".join(c.split()[::2]) for c in gt[:-2]] + ["", "?!"]
    gt[-1] = "(...)"  # last pair: both empty after preprocessing
    res = evaluate_imageclef(gt, cand, "imageclef2024", ["rouge1"])
    scorer = rouge_scorer.RougeScorer(["rouge1"], use_stemmer=False)
    direct = [scorer.score(preprocess(g), preprocess(c))["rouge1"].fmeasure for g, c in zip(gt, cand)]
    per = res["per_image"]["rouge1"]
    np.testing.assert_array_equal(per[:-1], direct[:-1])
    assert per[-2] == 0.0 and per[-1] == 1.0 and res["counts"]["both_empty"] == 1
    assert res["scores"]["rouge1"] == pytest.approx(per.mean())
    assert 0.2 < res["scores"]["rouge1"] < 0.9


def test_combined_2025_complete_and_partial():
    per = {k: np.array(v) for k, v in {"bertscore_f1": [0.6, 0.8], "rouge1": [0.2, 0.4], "similarity": [0.9, 0.7],
                                       "bleurt": [0.3, 0.5], "umls_f1": [0.1, 0.3], "alignscore": [0.2, 0.0]}.items()}
    scores = {k: float(v.mean()) for k, v in per.items()}
    combined = combine("imageclef2025", dict(per), scores)
    assert scores["relevance"] == pytest.approx((0.7 + 0.3 + 0.8) / 3)
    assert scores["relevance_with_bleurt"] == pytest.approx((0.7 + 0.3 + 0.8 + 0.4) / 4)
    assert scores["factuality"] == pytest.approx(0.15)
    assert scores["overall"] == pytest.approx((scores["relevance"] + 0.15) / 2)
    assert not combined["overall"]["partial"]
    partial = {k: v for k, v in per.items() if k != "alignscore"}
    s2 = {k: float(v.mean()) for k, v in partial.items()}
    c2 = combine("imageclef2025", partial, s2)
    assert "factuality" not in s2 and s2["factuality_partial"] == pytest.approx(0.2)
    assert c2["factuality"]["missing"] == ["alignscore"] and c2["overall"]["missing"] == ["alignscore"]
    assert "overall" not in s2 and "overall_partial" in s2


def test_seed_002_relevance_is_the_four_component_mean():
    # Seed 002 Table 1 (percent): similarity 87.98, BERTScore 59.51, ROUGE-1 25.35, BLEURT 30.20 -> 50.76
    assert np.mean([87.98, 59.51, 25.35, 30.20]) == pytest.approx(50.76, abs=0.005)
    assert np.mean([87.98, 59.51, 25.35]) != pytest.approx(50.76, abs=0.5)
    assert np.mean([50.76, 13.46]) == pytest.approx(32.11, abs=0.005)  # overall = mean(relevance, factuality)


def test_modality_mention_rate():
    caps = ["Axial CT of the chest", "MR image of the knee", "Chest radiograph", "sonography of the liver",
            "a picture", "DSA of the leg"]
    mods = ["CT", "MRI", "X-ray", "Ultrasound", "PET", "Angiography"]
    assert modality_mention_rate(caps, mods) == pytest.approx(5 / 6)
    assert modality_mention_rate(["contrast-enhanced scan"], ["CT"]) == 0.0  # "ct" inside a word does not count
    assert np.isnan(modality_mention_rate(["x"], [None]))
