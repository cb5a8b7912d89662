"""ROUGE-1 F-measure as the ImageCLEFmedical caption evaluators compute it (secondary metric 2023/2024,
relevance component 2025): Google's ``rouge_score`` with ``rouge1``, no stemmer, one reference per
image, scored per image. Text should already be ImageCLEF-preprocessed (see ``imageclef.preprocess``).

Used by notebook 08 through :mod:`medcap_utils.metrics.imageclef`.
"""
from __future__ import annotations

import numpy as np


def rouge1_f(references: list[str], candidates: list[str]) -> np.ndarray:
    """Per-pair ROUGE-1 F1 (``rouge_score`` 0.1.2 default tokenizer, ``use_stemmer=False``).

    A pair whose two texts are both empty is NOT special-cased here (rouge_score gives 0); the
    protocol layer applies the organisers' "both empty scores 1" rule.
    """
    from rouge_score import rouge_scorer

    if len(references) != len(candidates):
        raise ValueError("references and candidates differ in length")
    scorer = rouge_scorer.RougeScorer(["rouge1"], use_stemmer=False)
    # rouge_score.score(target, prediction): the reference is the target, as in HF evaluate's wrapper.
    return np.array([scorer.score(r, c)["rouge1"].fmeasure for r, c in zip(references, candidates)], dtype=float)
