"""Baselines every model must beat; notebook 08 writes them as runs so it always has something to
evaluate (also used by notebook 09's tables).

Constants (the most frequent caption, the consensus caption) say what phrasing alone scores; retrieval
(the caption of the nearest training image, by pixels or any features) says what copying a similar
training case scores -- a model that uses the image must beat both.
"""
from __future__ import annotations

import re
from collections import Counter

import numpy as np


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


# ---- caption baselines a constant cannot beat (issue 17) -----------------------------------------

_WORD = re.compile(r"[a-z0-9]+")


def _bags(captions: list[str], vocab: dict) -> tuple[np.ndarray, np.ndarray]:
    """Lower-cased word counts over ``vocab`` (rows: captions) and each caption's full word count."""
    bags = np.zeros((len(captions), len(vocab)), dtype=np.float32)
    lengths = np.zeros(len(captions), dtype=np.float32)
    for row, caption in enumerate(captions):
        words = _WORD.findall(caption.lower())
        lengths[row] = len(words)
        for word, n in Counter(words).items():
            if word in vocab:
                bags[row, vocab[word]] = n
    return bags, lengths


def consensus_caption(train_captions, n_reference: int = 500, n_candidates: int = 2000, seed: int = 0) -> str:
    """The training caption with the highest mean token F1 (clipped word counts, lower case, as SQuAD's F1)
    against a fixed-seed sample of at most ``n_reference`` other training captions; candidates are every
    training caption, or a fixed-seed sample of ``n_candidates`` on a large set (ROCOv2's 60k). Token F1
    rather than CIDEr: cheap (one numpy pass), and it rewards the typical phrasing, not rare n-grams.
    Ties: the first candidate in training order."""
    captions = list(train_captions)
    if not captions:
        raise ValueError("no training captions")
    rng = np.random.default_rng(seed)
    n = len(captions)
    refs = np.sort(rng.choice(n, size=min(n_reference, n), replace=False))
    cands = np.arange(n) if n <= n_candidates else np.sort(rng.choice(n, size=n_candidates, replace=False))
    vocab = {w: i for i, w in enumerate(sorted({w for r in refs for w in _WORD.findall(captions[r].lower())}))}
    ref_bags, ref_len = _bags([captions[r] for r in refs], vocab)
    best, best_score = int(cands[0]), -1.0
    for start in range(0, len(cands), 256):  # chunks keep the (chunk, refs, vocab) array small on ROCOv2
        chunk = cands[start:start + 256]
        bags, length = _bags([captions[c] for c in chunk], vocab)
        overlap = np.minimum(bags[:, None, :], ref_bags[None, :, :]).sum(-1)
        f1 = 2 * overlap / np.maximum(length[:, None] + ref_len[None, :], 1)
        others = chunk[:, None] != refs[None, :]  # a caption is not compared with itself
        mean = (f1 * others).sum(1) / np.maximum(others.sum(1), 1)
        top = int(np.argmax(mean))
        if mean[top] > best_score:
            best, best_score = int(chunk[top]), float(mean[top])
    return captions[best]


def nearest_neighbour_captions(train_features, train_captions, test_features, metric: str = "l2") -> list[str]:
    """For each test row, the caption of the closest training row (``metric`` ``l2`` or ``cosine``; ties: the
    first training row). Any features: raw pixels (:func:`pixel_features`) or, as the issue asks next, a
    stand-in encoder's pooled features -- pass its ``(N, D)`` matrices here."""
    train = np.asarray(train_features, dtype=np.float32)
    test = np.asarray(test_features, dtype=np.float32)
    captions = list(train_captions)
    if len(train) != len(captions) or train.ndim != 2 or test.ndim != 2 or train.shape[1] != test.shape[1]:
        raise ValueError(f"features {train.shape} / {test.shape} do not match {len(captions)} captions")
    if metric == "cosine":
        train = train / np.maximum(np.linalg.norm(train, axis=1, keepdims=True), 1e-12)
        test = test / np.maximum(np.linalg.norm(test, axis=1, keepdims=True), 1e-12)
    elif metric != "l2":
        raise ValueError(f"metric must be 'l2' or 'cosine', not {metric!r}")
    train_sq = (train ** 2).sum(1)
    out = []
    for start in range(0, len(test), 512):  # (512, N_train) distances at a time
        block = test[start:start + 512]
        # cosine: minus the dot product of unit vectors; l2: |a-b|^2 less |a|^2, which is constant per row
        dist = -block @ train.T if metric == "cosine" else train_sq[None, :] - 2 * block @ train.T
        out += [captions[j] for j in np.argmin(dist, axis=1)]
    return out


def pixel_features(data_dir, split: str, size: int = 16, cache_size: int = 64) -> tuple[list[str], np.ndarray]:
    """``(ids, (N, size*size*3) float32 in [0, 1])``: the split's images from the project's image cache
    (:func:`medcap_utils.data.cache.get_image_cache`, built on first use, any profile) averaged down to
    ``size`` px RGB; small, so L2 compares layout and colour rather than noise."""
    from medcap_utils.data.cache import get_image_cache
    from medcap_utils.paths import resolve

    if cache_size % size:
        raise ValueError(f"cache_size {cache_size} must be a multiple of size {size}")
    cache = get_image_cache(resolve(data_dir), split, cache_size)
    k = cache_size // size
    feats = np.empty((len(cache), size * size * 3), dtype=np.float32)
    for start in range(0, len(cache), 1024):
        block = np.asarray(cache.images[start:start + 1024], dtype=np.float32) / 255.0
        block = block.reshape(len(block), size, k, size, k, 3).mean(axis=(2, 4))
        feats[start:start + len(block)] = block.reshape(len(block), -1)
    return list(cache.ids), feats
