"""BLEURT with ``lucadiliello/BLEURT-20-D12`` through ``bleurt-pytorch``, as the ImageCLEF 2025/2026
evaluators use it: the regression logit per pair, averaged over images, on preprocessed text.

Rules taken from the organisers' code (2024's BLEURT code is not public; medcap applies these):
- each pair is tokenised as (reference, candidate), truncated to 512 tokens together
  (``truncation=True, max_length=512``); without ``max_length`` a long pair would run past the
  model's 512 positions instead of being cut.
- no empty rule: a pair whose texts are both empty is scored by the model like any other
  (the "both empty scores 1" rule of the other components is not applied to BLEURT).
Padding does not change a logit (the attention mask hides it), so the batch size is free.

The only PyPI release, ``bleurt-pytorch`` 0.0.1, imports ``find_pruneable_heads_and_indices`` from
``transformers.pytorch_utils``, which transformers 5 removed, so with this project's transformers it
cannot be imported and BLEURT is reported unavailable with that reason. ``model``/``tokenizer``
replace the checkpoint (tests pass stubs). Used by notebook 08 through
:mod:`medcap_utils.metrics.imageclef`.
"""
from __future__ import annotations

import numpy as np

from medcap_utils.metrics import MetricUnavailable, default_device

DEFAULT_BLEURT = "lucadiliello/BLEURT-20-D12"
MAX_LENGTH = 512


def _load(model_id: str):
    try:
        from bleurt_pytorch import BleurtForSequenceClassification, BleurtTokenizer
    except ImportError as err:
        raise MetricUnavailable(
            f"bleurt-pytorch not importable ({str(err)[:150]}); its only PyPI release (0.0.1) imports "
            "find_pruneable_heads_and_indices, which transformers 5 removed, so it needs a transformers 4 env") from err
    try:
        return (BleurtForSequenceClassification.from_pretrained(model_id).eval(),
                BleurtTokenizer.from_pretrained(model_id))
    except (OSError, ValueError) as err:
        raise MetricUnavailable(f"BLEURT checkpoint {model_id!r} could not be loaded: {str(err)[:300]}") from err


def bleurt_scores(candidates: list[str], references: list[str], model_id: str = DEFAULT_BLEURT,
                  batch_size: int = 32, device: str | None = None, model=None, tokenizer=None) -> dict:
    """Per-pair BLEURT logits ``{"bleurt": array}``; raises :class:`MetricUnavailable` with the reason."""
    import torch

    if len(candidates) != len(references):
        raise ValueError("candidates and references differ in length")
    if model is None or tokenizer is None:
        model, tokenizer = _load(model_id)
    device = device or default_device()
    model.to(device)
    scores = []
    with torch.no_grad():
        for i in range(0, len(candidates), batch_size):
            enc = tokenizer(list(references[i:i + batch_size]), list(candidates[i:i + batch_size]),
                            padding="longest", truncation=True, max_length=MAX_LENGTH, return_tensors="pt").to(device)
            scores.append(model(**enc).logits.flatten().float().cpu().numpy())
    return {"bleurt": np.concatenate(scores) if scores else np.zeros(0), "model_id": model_id}
