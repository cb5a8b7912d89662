"""Concept detection scores: the official ImageCLEFmedical per-image F1 and analysis extras.

Official primary: for every image with a non-empty ground-truth CUI list, binary F1 over the union
of ground-truth and predicted CUIs (both upper-cased), i.e. 2|T∩P| / (|T| + |P|) (equal to sklearn's
``f1_score(average="binary")`` on that union; 0 when nothing is predicted); the sum is divided by
the number of such images. Secondary: the same on ``concepts_manual`` with ground truth AND
predictions restricted to the allowed CUIs of the year (images left with no ground truth are
skipped): 14 CUIs up to 2024, 15 from 2025 (C0920367, OCT, added), see ``SECONDARY_CUIS``.

(The organisers' reader turns an empty CSV field into the one-element tuple ``("",)``, so an image
with an empty primary ground truth is in fact scored there; ROCOv2 images all carry concepts, and
here "empty" means empty, as the task description says.)

Extras for analysis: micro and macro F1 over concepts and per-concept precision/recall/support.
Used by notebook 08 and notebook 05 (threshold selection on the official metric).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from medcap_utils.data.rocov2 import MANUAL_CUIS

OCT = "C0920367"
# The secondary score's allowed CUIs by protocol year (the earlier evaluator lists 14, 2025 adds OCT).
SECONDARY_CUIS = {2023: MANUAL_CUIS - {OCT}, 2024: MANUAL_CUIS - {OCT}, 2025: MANUAL_CUIS, 2026: MANUAL_CUIS}
DEFAULT_YEAR = 2025


def secondary_cuis(year: int = DEFAULT_YEAR) -> frozenset:
    """The allowed CUIs of the secondary score in ``year``."""
    if year not in SECONDARY_CUIS:
        raise ValueError(f"no secondary CUI list for {year}; known years {sorted(SECONDARY_CUIS)}")
    return SECONDARY_CUIS[year]


def _norm(cuis) -> frozenset:
    return frozenset(c.strip().upper() for c in cuis if c and c.strip())


def per_image_f1(gt: dict, pred: dict, allowed=None) -> dict:
    """``{id: F1}`` for images whose (filtered) ground truth is non-empty; missing predictions = []."""
    out = {}
    allowed = None if allowed is None else {c.upper() for c in allowed}
    for image_id, truth in gt.items():
        t, p = _norm(truth), _norm(pred.get(image_id, ()))
        if allowed is not None:
            t, p = t & allowed, p & allowed
        if not t:
            continue
        out[image_id] = 2 * len(t & p) / (len(t) + len(p))
    return out


def f1_primary(gt: dict, pred: dict) -> float:
    """The official primary score (mean per-image F1 over images with ground truth)."""
    scores = per_image_f1(gt, pred)
    return float(np.mean(list(scores.values()))) if scores else float("nan")


def f1_secondary(gt_manual: dict, pred: dict, allowed=None, year: int = DEFAULT_YEAR) -> float:
    """The official secondary score on the manual concepts, restricted to ``allowed`` (default: the
    list of ``year``)."""
    scores = per_image_f1(gt_manual, pred, secondary_cuis(year) if allowed is None else allowed)
    return float(np.mean(list(scores.values()))) if scores else float("nan")


def per_concept_table(gt: dict, pred: dict) -> pd.DataFrame:
    """Per-CUI ``tp, fp, fn, support, precision, recall, f1`` (images = keys of ``gt``), by support."""
    tp, fp, fn = {}, {}, {}
    for image_id, truth in gt.items():
        t, p = _norm(truth), _norm(pred.get(image_id, ()))
        for c in t & p:
            tp[c] = tp.get(c, 0) + 1
        for c in p - t:
            fp[c] = fp.get(c, 0) + 1
        for c in t - p:
            fn[c] = fn.get(c, 0) + 1
    cuis = sorted(set(tp) | set(fp) | set(fn))
    df = pd.DataFrame({"cui": cuis, "tp": [tp.get(c, 0) for c in cuis], "fp": [fp.get(c, 0) for c in cuis],
                       "fn": [fn.get(c, 0) for c in cuis]})
    df["support"] = df.tp + df.fn
    df["precision"] = np.where(df.tp + df.fp > 0, df.tp / (df.tp + df.fp).clip(lower=1), 0.0)
    df["recall"] = np.where(df.support > 0, df.tp / df.support.clip(lower=1), 0.0)
    denom = df.precision + df.recall
    df["f1"] = np.where(denom > 0, 2 * df.precision * df.recall / denom.where(denom > 0, 1), 0.0)
    return df.sort_values(["support", "cui"], ascending=[False, True]).reset_index(drop=True)


def micro_macro_f1(gt: dict, pred: dict) -> dict:
    """Micro F1 (pooled counts) and macro F1 (mean over CUIs present in ground truth)."""
    table = per_concept_table(gt, pred)
    tp, fp, fn = table.tp.sum(), table.fp.sum(), table.fn.sum()
    micro = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")
    in_gt = table[table.support > 0]
    macro = float(in_gt.f1.mean()) if len(in_gt) else float("nan")
    return {"f1_micro": float(micro), "f1_macro": macro}


def concept_scores(gt: dict, pred: dict, gt_manual: dict | None = None, year: int = DEFAULT_YEAR) -> dict:
    """``scores`` (f1_primary, f1_secondary, f1_micro, f1_macro) and per-image primary/secondary F1;
    ``year`` picks the secondary score's CUI list."""
    primary = per_image_f1(gt, pred)
    scores = {"f1_primary": float(np.mean(list(primary.values()))) if primary else float("nan")}
    per_image = {"f1_primary": primary}
    if gt_manual is not None:
        secondary = per_image_f1(gt_manual, pred, secondary_cuis(year))
        scores["f1_secondary"] = float(np.mean(list(secondary.values()))) if secondary else float("nan")
        per_image["f1_secondary"] = secondary
    scores.update(micro_macro_f1(gt, pred))
    return {"scores": scores, "per_image": per_image, "year": year, "secondary_cuis": len(secondary_cuis(year)),
            "counts": {
        "images": len(gt), "images_scored": len(primary),
        "images_empty_gt": len(gt) - len(primary),
        "images_empty_prediction": sum(not _norm(pred.get(i, ())) for i in gt)}}
