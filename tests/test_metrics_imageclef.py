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


def test_both_empty_rule_follows_the_year():
    """2025 decides on the raw texts, 2023/2024 after preprocessing."""
    gt = ["(*).", "", "CT chest"]
    cand = ["", "", "ct chest"]
    r24 = evaluate_imageclef(gt, cand, "imageclef2024", ["rouge1"])
    r25 = evaluate_imageclef(gt, cand, "imageclef2025", ["rouge1"])
    assert list(r24["per_image"]["rouge1"]) == [1.0, 1.0, 1.0]
    assert list(r25["per_image"]["rouge1"]) == [0.0, 1.0, 1.0]  # "(*)." is not empty before preprocessing
    assert r24["counts"]["both_empty"] == 2 and r25["counts"]["both_empty"] == 1
    assert "TypeError" in r24["notes"]["both_empty"] and "raw" in r25["notes"]["both_empty"]


def test_bleurt_has_no_empty_rule_and_truncates_at_512(monkeypatch):
    """Stub tokenizer/model: the organisers' call (reference first, 512 tokens, every pair scored)."""
    import torch

    from medcap_utils.metrics import bleurt

    calls = []

    class Tok:
        def __call__(self, refs, cands, **kwargs):
            calls.append((list(refs), list(cands), kwargs))
            return _Enc({"input_ids": torch.tensor([[len(r) + 10 * len(c)] for r, c in zip(refs, cands)])})

    class _Enc(dict):
        def to(self, device):
            return self

    class Model:
        def to(self, device):
            return self

        def __call__(self, input_ids):
            return type("Out", (), {"logits": input_ids.float() / 100 - 0.5})

    out = bleurt.bleurt_scores(["ab", ""], ["abc", ""], model=Model(), tokenizer=Tok(), batch_size=8, device="cpu")
    np.testing.assert_allclose(out["bleurt"], [(3 + 20) / 100 - 0.5, -0.5])  # the empty pair: the model's value
    refs, cands, kwargs = calls[0]
    assert refs == ["abc", ""] and cands == ["ab", ""]
    assert kwargs["truncation"] is True and kwargs["max_length"] == 512 and kwargs["padding"] == "longest"

    seen = {}

    def fake(cands, refs, **kwargs):
        seen["pairs"] = list(zip(refs, cands))
        return {"bleurt": np.full(len(cands), -0.25)}

    monkeypatch.setattr(bleurt, "bleurt_scores", fake)
    res = evaluate_imageclef(["", "CT"], ["", "ct"], "imageclef2025", ["bleurt"])
    assert seen["pairs"] == [("", ""), ("ct", "ct")]  # both-empty pair sent to the model, not set to 1
    assert list(res["per_image"]["bleurt"]) == [-0.25, -0.25]


def test_similarity_empty_rules_2025_and_2026():
    """Stub MedImageInsight: 2025 gives 1 to a raw both-empty pair, 2026 gives 0 to any empty candidate."""
    from medcap_utils.metrics.similarity import medimageinsight_similarity

    encoded = []

    def encode(path, text):
        encoded.append(text)
        cos_like = {"good": [1.0, 0.0], "bad": [-1.0, 0.0], "": [0.6, 0.8]}[text]
        return np.array([1.0, 0.0]), np.array(cos_like)

    paths = ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    cands, refs = ["good", "bad", "", ""], ["x", "x", "", "x"]
    v25 = medimageinsight_similarity(paths, cands, refs, year=2025, encode=encode)
    np.testing.assert_allclose(v25, [2.5, 0.0, 1.0, 2.5 * 0.6])  # only the both-empty pair skips the model
    assert encoded == ["good", "bad", ""]
    encoded.clear()
    v26 = medimageinsight_similarity(paths, cands, refs, year=2026, encode=encode)
    np.testing.assert_allclose(v26, [2.5, 0.0, 0.0, 0.0])
    assert encoded == ["good", "bad"]
    with pytest.raises(ValueError):
        medimageinsight_similarity(paths, cands, refs, year=2024, encode=encode)


class _StubCAT:
    """MedCAT stand-in: a concept database with semantic types, and linking that honours the CUI filter."""

    def __init__(self, lexicon):
        self.lexicon = lexicon  # word -> (cui, pretty_name)
        filters = {"cuis": set()}
        self.cdb = type("CDB", (), {})()
        self.cdb.addl_info = {"type_id2cuis": {"T047": {"C1", "C2", "C4"}, "T060": {"C3"}, "T999": {"C9"}}}
        self.cdb.config = type("Config", (), {"linking": {"filters": filters}})()

    def get_entities(self, text):
        allowed = self.cdb.config.linking["filters"]["cuis"]
        ents = [self.lexicon[w] for w in text.lower().split() if w in self.lexicon]
        return {"entities": {i: {"cui": c, "pretty_name": n} for i, (c, n) in enumerate(ents) if c in allowed}}


def test_medcat_medcon_filter_and_per_name_matching():
    from medcap_utils.metrics.factuality import MEDCON_TYPES, medcon_f1, umls_concept_f1

    assert len(MEDCON_TYPES) == 127 and "T047" in MEDCON_TYPES and "T999" not in MEDCON_TYPES
    lexicon = {"pneumonia": ("C1", "Pneumonia"), "effusion": ("C2", "Effusion"), "ct": ("C3", "CT"),
               "widget": ("C9", "Widget"), "lung": ("C4", "Lung"), "pulmo": ("C4", "Lung, NOS")}
    cat = _StubCAT(lexicon)
    refs = ["pneumonia and effusion widget", "", "ct", "lung pulmo"]
    cands = ["pneumonia widget", "", "", "lung"]
    out = umls_concept_f1(refs, cands, cat=cat)
    assert cat.cdb.config.linking["filters"]["cuis"] == {"C1", "C2", "C3", "C4"}  # C9 (type T999) is filtered out
    # 1: ref {C1, C2} (widget filtered), cand {C1}: P=1, R=1/2 -> 2/3.  2: both empty -> 1.  3: empty cand -> 0.
    # 4: C4 found under two names in the reference counts twice: correct 2, P = 2/1, R = 2/2 -> F1 = 4/3.
    np.testing.assert_allclose(out, [2 / 3, 1.0, 0.0, 4 / 3])
    assert medcon_f1([{"cui": "C1", "pretty_name": "a"}], []) == 0.0
