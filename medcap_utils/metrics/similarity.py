"""ImageCLEF 2025 image-caption similarity: MedImageInsight embeddings, ``2.5 * max(cos, 0)`` on the
raw candidate caption (the organisers score a pair with both captions empty as 0 here).

MedImageInsight is not on PyPI or the model hub; the organisers load it from a local checkout
(``MedImageInsights/`` with ``medimageinsightmodel.py`` and the 2024.09.27 weights). Point
``MEDIMAGEINSIGHT_DIR`` (or ``model_dir``) at such a checkout to use it; otherwise the metric is
reported unavailable with that reason. Used by notebook 08 through ``imageclef``.
"""
from __future__ import annotations

import base64
import os
import sys
from pathlib import Path

import numpy as np

from medcap_utils.metrics import MetricUnavailable

W = 2.5


def medimageinsight_similarity(image_paths: list[str], candidates: list[str], model_dir: str | None = None) -> np.ndarray:
    """Per-image ``2.5 * max(cos(image, caption), 0)`` with MedImageInsight."""
    model_dir = model_dir or os.environ.get("MEDIMAGEINSIGHT_DIR")
    if not model_dir or not (Path(model_dir) / "medimageinsightmodel.py").exists():
        raise MetricUnavailable("MedImageInsight not available: set MEDIMAGEINSIGHT_DIR to a checkout with "
                                "medimageinsightmodel.py and its 2024.09.27 weights (not on PyPI/hub)")
    sys.path.insert(0, str(model_dir))
    from medimageinsightmodel import MedImageInsight  # type: ignore

    model = MedImageInsight(model_dir=str(Path(model_dir) / "2024.09.27"),
                            vision_model_name="medimageinsigt-v1.0.0.pt", language_model_name="language_model.pth")
    model.load_model()
    scores = []
    for path, text in zip(image_paths, candidates):
        image = base64.encodebytes(Path(path).read_bytes()).decode("utf-8")
        emb = model.encode(images=[image], texts=[text])
        v, c = np.asarray(emb["image_embeddings"][0]), np.asarray(emb["text_embeddings"][0])
        scores.append(W * max(float(c @ v / (np.linalg.norm(c) * np.linalg.norm(v))), 0.0))
    return np.array(scores, dtype=float)
