"""Trivial baselines every model must beat; notebook 08 writes them as runs so it always has
something to evaluate (also used by notebook 09's tables).
"""
from __future__ import annotations

from collections import Counter


def most_frequent_caption(train_captions) -> str:
    """The most frequent training caption (ties: the first seen), exact text."""
    captions = list(train_captions)
    if not captions:
        raise ValueError("no training captions")
    counts = Counter(captions)
    best = max(counts.values())
    return next(c for c in captions if counts[c] == best)


def top_k_concepts(train_cuis, k: int) -> list[str]:
    """The ``k`` CUIs occurring on most training images (ties: first seen), upper-cased."""
    counts: Counter = Counter()
    for cuis in train_cuis:
        counts.update(list(dict.fromkeys(c.strip().upper() for c in cuis if c.strip())))
    return [c for c, _ in sorted(counts.items(), key=lambda kv: -kv[1])[:k]]
