"""ImageCLEF image-caption similarity: MedImageInsight embeddings, ``2.5 * max(cos, 0)`` on the raw
candidate caption, with the empty-caption rule of the chosen year:

- 2025: a pair whose raw ground truth and raw candidate are both empty scores 1 (no model call);
  an empty candidate beside a non-empty ground truth is encoded like any other text.
- 2026: an empty raw candidate scores 0 (no model call), whatever the ground truth.

Both official evaluators also turn an exception while encoding into a score of 1; medcap does not
(a failed encoding would then earn full marks): the error propagates and the metric is not reported.

MedImageInsight is not on PyPI or the model hub; the organisers load it from a local checkout
(``MedImageInsights/`` with ``medimageinsightmodel.py`` and the 2024.09.27 weights). Point
``MEDIMAGEINSIGHT_DIR`` (or ``model_dir``) at such a checkout to use it; otherwise the metric is
reported unavailable with that reason. ``encode`` replaces the model (tests pass a stub). Used by
notebook 08 through ``imageclef``.
"""
from __future__ import annotations

import base64
import os
import sys
from pathlib import Path

import numpy as np

from medcap_utils.metrics import MetricUnavailable

W = 2.5
YEARS = (2025, 2026)


def empty_rule(reference: str, candidate: str, year: int) -> float | None:
    """The score the ``year``'s rule fixes for this pair without the model, or None to use the model."""
    if year == 2025:
        return 1.0 if len(reference) == 0 and len(candidate) == 0 else None
    if year == 2026:
        return 0.0 if len(candidate) == 0 else None
    raise ValueError(f"similarity rules exist for {YEARS}, not {year}")


def _load_encoder(model_dir: str | None):
    """``encode(image_path, text) -> (image vector, text vector)`` with MedImageInsight."""
    model_dir = model_dir or os.environ.get("MEDIMAGEINSIGHT_DIR")
    if not model_dir or not (Path(model_dir) / "medimageinsightmodel.py").exists():
        raise MetricUnavailable("MedImageInsight not available: set MEDIMAGEINSIGHT_DIR to a checkout with "
                                "medimageinsightmodel.py and its 2024.09.27 weights (not on PyPI/hub)")
    sys.path.insert(0, str(model_dir))
    from medimageinsightmodel import MedImageInsight  # type: ignore

    model = MedImageInsight(model_dir=str(Path(model_dir) / "2024.09.27"),
                            vision_model_name="medimageinsigt-v1.0.0.pt", language_model_name="language_model.pth")
    model.load_model()

    def encode(path: str, text: str):
        image = base64.encodebytes(Path(path).read_bytes()).decode("utf-8")
        emb = model.encode(images=[image], texts=[text])
        return np.asarray(emb["image_embeddings"][0]), np.asarray(emb["text_embeddings"][0])

    return encode


def medimageinsight_similarity(image_paths: list[str], candidates: list[str], references: list[str],
                               year: int = 2025, model_dir: str | None = None, encode=None) -> np.ndarray:
    """Per-image ``2.5 * max(cos(image, caption), 0)``; pairs fixed by :func:`empty_rule` skip the model.

    ``references``: the raw ground truth, aligned (the 2025 rule looks at it).
    """
    if year not in YEARS:
        raise ValueError(f"similarity rules exist for {YEARS}, not {year}")
    if len(references) != len(candidates) or len(image_paths) != len(candidates):
        raise ValueError("image_paths, candidates and references differ in length")
    encode = encode or _load_encoder(model_dir)
    scores = []
    for path, text, ref in zip(image_paths, candidates, references):
        fixed = empty_rule(ref, text, year)
        if fixed is not None:
            scores.append(fixed)
            continue
        v, c = (np.asarray(x, dtype=float) for x in encode(path, text))
        scores.append(W * max(float(c @ v / (np.linalg.norm(c) * np.linalg.norm(v))), 0.0))
    return np.array(scores, dtype=float)
