"""One row of named caption scores, and the table of such rows that the notebooks show.

Notebooks 02, 03, 06 and 07 each score generated captions against the references in a table: one row per
model, one column per metric. They all go through :func:`score_row` (predictions and references in, one row
of named scores out) and :func:`score_table` (rows in, the DataFrame out), so a metric is computed one way
everywhere: by :func:`medcap_utils.evaluation.evaluate.evaluate_captions`, the same code notebook 08 uses,
with pycocoevalcap's own numbers (tests/test_scores.py checks them against pycocoevalcap directly).

Names are the evaluator's (``Bleu_4``, ``ROUGE_L``, ``rouge1``...) unless ``names`` renames them; a metric
asked for but unavailable (e.g. METEOR without Java) is NaN, and its reason goes into ``notes`` when given.
Presentation stays with the notebook that needs it (MSMedCap's ``scaled_like_paper``, rounding in
:func:`medcap_utils.report.save_table`). The per-epoch validation score of ``training.blip.make_evaluate_fn``
cannot use this module (training comes before evaluation in the layers); it calls ``metrics.coco`` itself.
"""
from __future__ import annotations

import math

import pandas as pd

#: The column of the share of captions that name their image's modality (when ``modalities`` are given).
MODALITY = "modality_rate"


def score_row(refs: dict, preds: dict, metrics=None, protocol: str = "coco", bootstrap: int = 0,
              modalities=None, names: dict | None = None, out_dir=None, notes: dict | None = None,
              seed: int = 0) -> dict:
    """``{metric: value}`` for predictions ``{id: caption}`` against references ``{id: caption}``.

    ``metrics``: the names wanted, in this order (default: the protocol's, in the evaluator's order, then
    any unavailable one); ``protocol``: ``coco`` or an ImageCLEF year; ``bootstrap``: resamples for the
    confidence intervals written to ``out_dir`` (the point scores do not depend on it; 0 = none);
    ``modalities`` (aligned with ``refs``): adds :data:`MODALITY`; ``names``: ``{metric: column}`` renames;
    ``out_dir``: the evaluator's files (scores.json, per_image.csv, refs/hyps) are written there;
    ``notes``: a dict filled with ``{metric: why unavailable}``.
    """
    from medcap_utils.evaluation.evaluate import evaluate_captions

    result = evaluate_captions(refs, preds, protocol=protocol, metrics=None if metrics is None else list(metrics),
                               bootstrap=bootstrap, seed=seed, out_dir=out_dir)
    scores, unavailable = result["scores"], result["unavailable"]
    wanted = list(metrics) if metrics is not None else [*scores, *(m for m in unavailable if m not in scores)]
    row = {m: float(scores[m]) if m in scores else math.nan for m in wanted}
    if notes is not None:
        notes.update({m: str(unavailable[m]) for m in wanted if m not in scores and m in unavailable})
    if modalities is not None:
        from medcap_utils.metrics.modality import modality_mention_rate

        row[MODALITY] = modality_mention_rate([preds[i] for i in refs], list(modalities))
    return {(names or {}).get(k, k): v for k, v in row.items()}


def score_dataset(dataset, preds: dict, **options) -> dict:
    """:func:`score_row` on a captioning dataset (``ids``, ``captions``, ``modalities``; e.g.
    ``CaptionImageCacheDataset``): its captions are the references, its modalities give :data:`MODALITY`."""
    return score_row(dict(zip(dataset.ids, dataset.captions)), preds, modalities=dataset.modalities, **options)


def score_table(rows) -> pd.DataFrame:
    """Rows of :func:`score_row` (each usually with a ``model`` key first) stacked into one DataFrame."""
    return pd.DataFrame(list(rows))


def notes_table(row: dict, notes: dict) -> pd.DataFrame:
    """One row as a long ``metric | value | note`` table, the note saying why a metric is unavailable."""
    return pd.DataFrame([{"metric": k, "value": v, "note": f"unavailable: {notes[k]}" if k in notes else ""}
                         for k, v in row.items()])
