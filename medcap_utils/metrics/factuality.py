"""ImageCLEF 2025 factuality components: AlignScore and UMLS concept F1 (MedCAT).

- AlignScore: package ``alignscore`` with ``roberta-large`` and the AlignScore-base checkpoint,
  mode ``nli_sp``, context = raw ground truth, claim = raw candidate. Set ``ALIGNSCORE_CKPT``.
- UMLS concept F1: MedCAT with a UMLS model pack (needs a UMLS licence). Set ``MEDCAT_MODEL_PACK``.
  precision = correct / |predicted CUIs|, recall = correct / |true CUIs|; both texts empty -> 1.
Missing packages or files are reported unavailable with the reason. Used by notebook 08.
"""
from __future__ import annotations

import os

import numpy as np

from medcap_utils.metrics import MetricUnavailable


def alignscore(references: list[str], candidates: list[str], ckpt_path: str | None = None,
               device: str | None = None, batch_size: int = 32) -> np.ndarray:
    """Per-pair AlignScore (raw text)."""
    ckpt_path = ckpt_path or os.environ.get("ALIGNSCORE_CKPT")
    try:
        from alignscore import AlignScore  # type: ignore
    except ImportError as err:
        raise MetricUnavailable(f"package alignscore not installed ({err}); needs roberta-large + AlignScore-base.ckpt") from err
    if not ckpt_path or not os.path.exists(ckpt_path):
        raise MetricUnavailable("AlignScore-base checkpoint not found: set ALIGNSCORE_CKPT")
    import torch

    scorer = AlignScore(model="roberta-large", batch_size=batch_size, ckpt_path=ckpt_path, evaluation_mode="nli_sp",
                        device=device or ("cuda:0" if torch.cuda.is_available() else "cpu"))
    return np.array([1.0 if not r and not c else float(scorer.score(contexts=[r], claims=[c])[0])
                     for r, c in zip(references, candidates)], dtype=float)


def concept_set_f1(true: set, pred: set) -> float:
    """F1 of two CUI sets with precision = |T∩P|/|P|, recall = |T∩P|/|T| (0 when either is empty)."""
    correct = len(true & pred)
    if not correct:
        return 0.0
    p, r = correct / len(pred), correct / len(true)
    return 2 * p * r / (p + r)


def umls_concept_f1(references: list[str], candidates: list[str], model_pack: str | None = None) -> np.ndarray:
    """Per-pair UMLS concept F1 with MedCAT entity linking (raw text)."""
    model_pack = model_pack or os.environ.get("MEDCAT_MODEL_PACK")
    try:
        from medcat.cat import CAT  # type: ignore
    except ImportError as err:
        raise MetricUnavailable(f"package medcat not installed ({err}); also needs a UMLS-licensed model pack") from err
    if not model_pack or not os.path.exists(model_pack):
        raise MetricUnavailable("MedCAT UMLS model pack not found (needs a UMLS licence): set MEDCAT_MODEL_PACK")
    cat = CAT.load_model_pack(model_pack)

    def cuis(text: str) -> set:
        return {ent["cui"] for ent in cat.get_entities(text).get("entities", {}).values()}

    return np.array([1.0 if not r and not c else concept_set_f1(cuis(r), cuis(c))
                     for r, c in zip(references, candidates)], dtype=float)
