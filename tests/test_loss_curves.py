"""Fast vs plain BLIP training curves (medcap_utils.runner.loss_curves, issue 6): the verdict can fail, and a
short CPU run in fp32 and bf16 (autocast) agrees."""
import numpy as np
import pytest

from medcap_utils.runner.loss_curves import RUNS, compare


def _curves(rng, offset=0.0, noise=1e-3):
    exact = np.linspace(10.0, 6.0, 30)
    curves = {run: exact + rng.normal(0, noise, 30) * (run[1] == "bf16") for run in RUNS}
    curves[("fast", "bf16")] = curves[("fast", "bf16")] + offset
    return curves


def test_verdict_accepts_bf16_rounding_and_rejects_a_shifted_curve():
    rng = np.random.default_rng(0)
    assert compare(_curves(rng))["agree"]
    assert not compare(_curves(rng, offset=0.01))["agree"]  # a loss 0.01 off in every step is not rounding
    bad = _curves(rng)
    bad[("fast", "fp32")] = bad[("fast", "fp32")] * (1 + 1e-3)  # fp32 paths must be the same function
    assert not compare(bad)["agree"]


@pytest.mark.slow
def test_fast_and_plain_blip_curves_agree_in_bf16(tmp_path):
    from medcap_utils.runner.loss_curves import run

    table, summary = run("tiny", image_size=32, batch_size=4, steps=24, lr=1e-3, data_dir=str(tmp_path / "none"))
    assert list(table.columns) == ["plain_fp32", "plain_bf16", "fast_fp32", "fast_bf16"] and len(table) == 24
    assert summary["learned"], summary  # the loss falls, so agreement is not two flat lines
    assert summary["bf16_noise"] > 0  # bf16 really ran (autocast changes the numbers)
    assert summary["agree"], summary
