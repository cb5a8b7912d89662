"""Caption and concept metrics, one module per family; used by notebook 08 and every training notebook.

Modules: ``coco`` (pycocoevalcap BLEU/METEOR/ROUGE-L/CIDEr/SPICE), ``rouge1`` (ImageCLEF ROUGE-1),
``imageclef`` (the organisers' 2024/2025 caption protocols), ``bertscore``, ``bleurt``, ``clipscore``,
``similarity`` (MedImageInsight), ``factuality`` (AlignScore, MedCAT UMLS F1), ``concepts`` (concept
detection F1), ``bootstrap`` (confidence intervals, paired tests), ``modality``, ``provenance``.

A metric whose model or package is missing is never replaced by a made-up number: it comes back as
an :class:`Unavailable` record with the reason, and combined scores that needed it are marked partial.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class Unavailable:
    """A metric that could not be computed here, and why (e.g. checkpoint not reachable offline)."""

    metric: str
    reason: str

    def to_dict(self) -> dict:
        return {"available": False, **asdict(self)}


class MetricUnavailable(RuntimeError):
    """Raised inside a metric module when its checkpoint/package is missing; callers turn it into
    an :class:`Unavailable` record."""


def default_device() -> str:
    """Where model-based metrics run: the GPU when present, else the CPU."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
