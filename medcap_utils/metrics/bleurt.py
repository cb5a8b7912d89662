"""BLEURT with ``lucadiliello/BLEURT-20-D12`` through ``bleurt-pytorch``, as the ImageCLEF 2024/2025
evaluators use it (mean of the regression logits over images, on preprocessed text).

The only PyPI release, ``bleurt-pytorch`` 0.0.1, imports ``find_pruneable_heads_and_indices`` from
``transformers.pytorch_utils``, which transformers 5 removed, so with this project's transformers it
cannot be imported and BLEURT is reported unavailable with that reason. A user with an environment
where ``bleurt_pytorch`` imports (transformers 4.x) and the checkpoint is reachable gets real values.

Used by notebook 08 through :mod:`medcap_utils.metrics.imageclef`.
"""
from __future__ import annotations

import numpy as np

from medcap_utils.metrics import MetricUnavailable, default_device

DEFAULT_BLEURT = "lucadiliello/BLEURT-20-D12"


def bleurt_scores(candidates: list[str], references: list[str], model_id: str = DEFAULT_BLEURT,
                  batch_size: int = 32, device: str | None = None) -> dict:
    """Per-pair BLEURT logits ``{"bleurt": array}``; raises :class:`MetricUnavailable` with the reason."""
    try:
        import torch
        from bleurt_pytorch import BleurtForSequenceClassification, BleurtTokenizer
    except ImportError as err:
        raise MetricUnavailable(
            f"bleurt-pytorch not importable ({str(err)[:150]}); its only PyPI release (0.0.1) imports "
            "find_pruneable_heads_and_indices, which transformers 5 removed, so it needs a transformers 4 env") from err
    try:
        model = BleurtForSequenceClassification.from_pretrained(model_id).eval()
        tokenizer = BleurtTokenizer.from_pretrained(model_id)
    except (OSError, ValueError) as err:
        raise MetricUnavailable(f"BLEURT checkpoint {model_id!r} could not be loaded: {str(err)[:300]}") from err
    device = device or default_device()
    model.to(device)
    scores = []
    with torch.no_grad():
        for i in range(0, len(candidates), batch_size):
            enc = tokenizer(list(references[i:i + batch_size]), list(candidates[i:i + batch_size]),
                            padding="longest", truncation=True, return_tensors="pt").to(device)
            scores.append(model(**enc).logits.flatten().float().cpu().numpy())
    return {"bleurt": np.concatenate(scores) if scores else np.zeros(0), "model_id": model_id}
