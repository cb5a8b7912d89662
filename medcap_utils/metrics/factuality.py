"""ImageCLEF 2025 factuality components: AlignScore and UMLS concept F1 (MedCAT).

- AlignScore: package ``alignscore`` with ``roberta-large`` and the AlignScore-base checkpoint,
  mode ``nli_sp``, context = raw ground truth, claim = raw candidate. Set ``ALIGNSCORE_CKPT``.
- UMLS concept F1: MedCAT with a UMLS model pack (needs a UMLS licence). Set ``MEDCAT_MODEL_PACK``.
  As the 2025/2026 evaluators run it: linking is restricted to the CUIs of the 127 MEDCON semantic
  types (``MEDCON_TYPES``); each text's matches are grouped by the entity's ``pretty_name``, a CUI
  listed once per name it was found under; correct = reference (name, CUI) entries whose CUI the
  candidate has; precision = correct / len(candidate list), recall = correct / len(reference list).
- Both components: a pair whose raw ground truth and raw candidate are both empty scores 1.
Missing packages or files are reported unavailable with the reason; ``cat`` replaces the model
pack (tests pass a stub). Used by notebook 08.
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
        raise MetricUnavailable(f"package alignscore not installed ({err}); "
                                "needs roberta-large + AlignScore-base.ckpt") from err
    if not ckpt_path or not os.path.exists(ckpt_path):
        raise MetricUnavailable("AlignScore-base checkpoint not found: set ALIGNSCORE_CKPT")
    import torch

    scorer = AlignScore(model="roberta-large", batch_size=batch_size, ckpt_path=ckpt_path, evaluation_mode="nli_sp",
                        device=device or ("cuda:0" if torch.cuda.is_available() else "cpu"))
    return np.array([1.0 if len(r) == 0 and len(c) == 0 else float(scorer.score(contexts=[r], claims=[c])[0])
                     for r, c in zip(references, candidates)], dtype=float)


def concept_set_f1(true: set, pred: set) -> float:
    """F1 of two CUI sets with precision = |T∩P|/|P|, recall = |T∩P|/|T| (0 when either is empty)."""
    correct = len(true & pred)
    if not correct:
        return 0.0
    p, r = correct / len(pred), correct / len(true)
    return 2 * p * r / (p + r)


# UMLS semantic types kept by the MEDCON filter of the 2025/2026 evaluators (127 types).
MEDCON_TYPES = frozenset(f"T{n:03d}" for n in (
    1, 2, 4, 5, 7, 8, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 28, 29, 30, 31, 32,
    33, 34, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61,
    62, 63, 64, 65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 77, 78, 79, 80, 81, 82, 83, 85, 86, 87, 88, 89, 90,
    91, 92, 93, 94, 95, 96, 97, 98, 99, 100, 101, 102, 103, 104, 109, 114, 116, 120, 121, 122, 123, 125, 126,
    127, 129, 130, 131, 167, 168, 169, 170, 171, 184, 185, 190, 191, 192, 194, 195, 196, 197, 200, 201, 203, 204))


def restrict_to_medcon(cat, types=MEDCON_TYPES) -> set:
    """Limit ``cat``'s linking to the CUIs of ``types`` (MedCAT's ``linking.filters.cuis``); returns them.

    A type the model pack does not list contributes nothing (the organisers' code would stop with a
    KeyError there; their pack lists all 127).
    """
    type_to_cuis = cat.cdb.addl_info["type_id2cuis"]
    cuis = set()
    for type_id in types:
        cuis.update(type_to_cuis.get(type_id, ()))
    cat.cdb.config.linking["filters"]["cuis"] = cuis
    return cuis


def named_matches(entities) -> tuple[dict, list]:
    """``({pretty_name: [CUI, ...]}, [CUI, ...])``: a CUI is listed once per name it was found under."""
    by_name, listed = {}, []
    for ent in entities:
        cuis = by_name.setdefault(ent["pretty_name"], [])
        if ent["cui"] not in cuis:
            cuis.append(ent["cui"])
            listed.append(ent["cui"])
    return by_name, listed


def medcon_f1(reference_entities, candidate_entities) -> float:
    """The per-pair MedCAT F1 of the 2025/2026 evaluators from two texts' MedCAT entities.

    Counting is per (name, CUI) entry, not per set: with a model pack whose CUI has one preferred
    name this equals the set F1 of :func:`concept_set_f1`.
    """
    ref_names, ref_list = named_matches(reference_entities)
    _, cand_list = named_matches(candidate_entities)
    correct = sum(1 for cuis in ref_names.values() for cui in cuis if cui in cand_list)
    precision = correct / len(cand_list) if cand_list else 0.0
    recall = correct / len(ref_list) if ref_list else 0.0
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def umls_concept_f1(references: list[str], candidates: list[str], model_pack: str | None = None,
                    cat=None) -> np.ndarray:
    """Per-pair UMLS concept F1 with MedCAT entity linking on raw text (MEDCON types only)."""
    if cat is None:
        model_pack = model_pack or os.environ.get("MEDCAT_MODEL_PACK")
        try:
            from medcat.cat import CAT  # type: ignore
        except ImportError as err:
            raise MetricUnavailable(f"package medcat not installed ({err}); "
                                    "also needs a UMLS-licensed model pack") from err
        if not model_pack or not os.path.exists(model_pack):
            raise MetricUnavailable("MedCAT UMLS model pack not found (needs a UMLS licence): set MEDCAT_MODEL_PACK")
        cat = CAT.load_model_pack(model_pack)
    restrict_to_medcon(cat)

    def entities(text: str):
        return list(cat.get_entities(text)["entities"].values())

    return np.array([1.0 if len(r) == 0 and len(c) == 0 else medcon_f1(entities(r), entities(c))
                     for r, c in zip(references, candidates)], dtype=float)
