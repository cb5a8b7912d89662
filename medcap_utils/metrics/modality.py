"""Does a caption name the image's modality? A cheap sanity metric for the demo data and ROCOv2.

Used by notebooks 02-04, 06-08 (``modality_mention_rate``).
"""
from __future__ import annotations

import re

#: Words that count as naming each modality (whole words, case-insensitive).
SYNONYMS: dict[str, list[str]] = {
    "CT": ["ct", "computed tomography", "computed tomographic", "cta"],
    "MRI": ["mri", "mr", "magnetic resonance"],
    "X-ray": ["x-ray", "xray", "x ray", "radiograph", "radiographs", "radiography", "chest film"],
    "Ultrasound": ["ultrasound", "us", "sonograph", "sonography", "sonographic", "ultrasonography", "echocardiography"],
    "Angiography": ["angiography", "angiogram", "dsa", "arteriogram", "angiographic"],
    "PET": ["pet", "positron emission"],
    "OCT": ["oct", "optical coherence tomography"],
}
_PATTERNS = {m: re.compile(r"(?<![a-z0-9])(" + "|".join(re.escape(w) for w in ws) + r")(?![a-z0-9])")
             for m, ws in SYNONYMS.items()}


def mentions_modality(caption: str, modality: str) -> bool:
    """True when ``caption`` names ``modality`` (one of :data:`SYNONYMS`' keys)."""
    pattern = _PATTERNS.get(modality)
    if pattern is None:
        raise KeyError(f"unknown modality {modality!r}; known: {list(SYNONYMS)}")
    return bool(pattern.search(str(caption).lower()))


def modality_mention_rate(captions: list[str], modalities: list[str]) -> float:
    """Share of captions that name their image's modality (images with modality None are skipped)."""
    pairs = [(c, m) for c, m in zip(captions, modalities) if m]
    if not pairs:
        return float("nan")
    return sum(mentions_modality(c, m) for c, m in pairs) / len(pairs)
