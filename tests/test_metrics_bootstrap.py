"""Bootstrap CIs and paired tests: coverage-type properties, determinism, sensitivity."""
from __future__ import annotations

import numpy as np
import pytest

from medcap_utils.metrics.bootstrap import bootstrap_ci, paired_bootstrap, permutation_test


def test_ci_contains_mean_and_is_deterministic():
    values = np.random.default_rng(1).random(200)
    ci = bootstrap_ci(values, n_boot=500, seed=3)
    assert ci["low"] < values.mean() < ci["high"]
    assert ci == bootstrap_ci(values, n_boot=500, seed=3)
    assert ci != bootstrap_ci(values, n_boot=500, seed=4)


def test_width_shrinks_with_n():
    rng = np.random.default_rng(0)
    widths = []
    for n in (50, 500, 5000):
        ci = bootstrap_ci(rng.random(n), n_boot=400, seed=0)
        widths.append(ci["high"] - ci["low"])
    assert widths[0] > widths[1] > widths[2]
    # roughly 1/sqrt(n): 10x more images -> about 3.2x narrower
    assert 2.0 < widths[0] / widths[1] < 5.0


def test_ci_covers_true_mean_most_of_the_time():
    rng = np.random.default_rng(7)
    covered = 0
    for s in range(60):
        ci = bootstrap_ci(rng.random(100), n_boot=300, seed=s)
        covered += ci["low"] <= 0.5 <= ci["high"]
    assert covered >= 50  # nominal 95% -> about 57 of 60


def test_paired_tests_detect_a_shift_and_not_noise():
    rng = np.random.default_rng(0)
    a = rng.random(300)
    better = a + 0.05 + rng.normal(0, 0.01, 300)
    assert paired_bootstrap(better, a)["p_value"] < 0.01
    assert paired_bootstrap(better, a)["low"] > 0
    assert permutation_test(better, a, n_perm=2000)["p_value"] < 0.01
    noise = a + rng.normal(0, 0.01, 300) - 0.0  # no shift: the null is true
    assert permutation_test(noise, a, n_perm=2000)["p_value"] > 0.05
    assert permutation_test(a, a, n_perm=500)["p_value"] == 1.0


def test_no_resamples_means_no_interval_but_scores():
    from medcap_utils.evaluation.evaluate import evaluate_captions

    result = evaluate_captions({"a": "ct of the chest", "b": "mri of the brain"},
                               {"a": "ct of the chest", "b": "mri of the knee"}, protocol="coco", bootstrap=0)
    assert result["scores"]["Bleu_1"] > 0.5
    ci = result["ci"]["Bleu_1"]
    assert ci["mean"] == pytest.approx(result["scores"]["Bleu_1"]) and np.isnan(ci["low"]) and np.isnan(ci["high"])
