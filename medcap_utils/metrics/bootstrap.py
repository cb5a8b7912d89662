"""Bootstrap confidence intervals over images and paired tests between two runs.

Every caption/concept score here is a mean of per-image scores, except corpus BLEU (pycocoevalcap
pools n-gram counts over images) for which each resample recomputes the corpus score from per-image
sufficient statistics. METEOR's corpus score pools its own statistics inside Java; its CI uses the
mean of per-segment scores (said in ``method``). CIDEr keeps the document frequencies of the full
reference set (they are not recomputed per resample). Used by notebook 08 and ``evaluate``.
"""
from __future__ import annotations

import numpy as np

N_BOOT = 1000


def resample_counts(n: int, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """``(n_boot, n)`` multiplicities of each image in each resample (images drawn with replacement)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    counts = np.zeros((n_boot, n), dtype=np.float64)
    np.add.at(counts, (np.arange(n_boot)[:, None], idx), 1.0)
    return counts


def bootstrap_ci(values, n_boot: int = N_BOOT, seed: int = 0, alpha: float = 0.05, counts=None) -> dict:
    """Percentile CI of the mean of per-image ``values``: ``{"mean", "low", "high", "n", "n_boot"}``."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    if n == 0 or n_boot == 0:  # no images, or no interval asked for (bootstrap=0)
        mean = float(values.mean()) if n else float("nan")
        return {"mean": mean, "low": float("nan"), "high": float("nan"), "n": n, "n_boot": n_boot}
    counts = resample_counts(n, n_boot, seed) if counts is None else counts
    stats = counts @ values / n
    low, high = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return {"mean": float(values.mean()), "low": float(low), "high": float(high), "n": n, "n_boot": n_boot}


def bootstrap_ci_stat(statistic, n: int, full_value: float, n_boot: int = N_BOOT, seed: int = 0,
                      alpha: float = 0.05, counts=None) -> dict:
    """Percentile CI of any corpus statistic: ``statistic(counts (B, n)) -> (B,)`` values."""
    if n == 0 or n_boot == 0:
        return {"mean": float(full_value), "low": float("nan"), "high": float("nan"), "n": n, "n_boot": n_boot}
    counts = resample_counts(n, n_boot, seed) if counts is None else counts
    stats = np.asarray(statistic(counts), dtype=float)
    low, high = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return {"mean": float(full_value), "low": float(low), "high": float(high), "n": n, "n_boot": n_boot}


def paired_bootstrap(a, b, n_boot: int = N_BOOT, seed: int = 0, alpha: float = 0.05) -> dict:
    """Difference of means ``a - b`` on the same images: CI and a two-sided bootstrap p-value."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError("paired scores must be aligned per image")
    diff = a - b
    counts = resample_counts(len(diff), n_boot, seed)
    stats = counts @ diff / len(diff)
    low, high = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    # p-value: how often the resampled difference lands on the other side of 0 (two-sided).
    p = 2 * min(np.mean(stats <= 0), np.mean(stats >= 0))
    return {"diff": float(diff.mean()), "low": float(low), "high": float(high), "p_value": float(min(p, 1.0))}


def permutation_test(a, b, n_perm: int = 10000, seed: int = 0) -> dict:
    """Paired sign-flip permutation test of ``mean(a - b) == 0`` (two-sided, with +1 correction)."""
    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    rng = np.random.default_rng(seed)
    signs = rng.choice([-1.0, 1.0], size=(n_perm, len(diff)))
    null = np.abs(signs @ diff) / max(len(diff), 1)
    observed = abs(diff.mean()) if len(diff) else 0.0
    p = (np.sum(null >= observed - 1e-12) + 1) / (n_perm + 1)
    return {"diff": float(diff.mean()) if len(diff) else float("nan"), "p_value": float(p), "n_perm": n_perm}
