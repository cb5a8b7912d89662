"""``python -m medcap_utils.runner.bench`` on CPU with the tiny BLIP: both paths timed, FLOPs counted, the fast
decoder checked against ``generate`` on the timed batches, results written; the projection's arithmetic."""
import json

import pytest

from medcap_utils.runner.bench import main, projection
from medcap_utils.runner.bench_setup import blip_config, peak_tflops


def _run(tmp_path, capsys, *args):
    assert main([*args, "--model", "tiny", "--steps", "1", "--warmup", "0", "--batch-size", "3", "--json",
                 "--out", str(tmp_path)]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    files = list(tmp_path.glob("*.json"))
    assert len(files) == 1 and json.loads(files[0].read_text()) == lines
    return lines


@pytest.mark.parametrize("workload", ["train", "decode"])
def test_bench_on_cpu(workload, demo_root, tmp_path, capsys):
    hf, fast = _run(tmp_path, capsys, workload, "--data-dir", str(demo_root))
    unit = "images_per_s" if workload == "train" else "captions_per_s"
    assert hf["path"] == "hf" and fast["path"] == "fast" and hf[unit] > 0 and fast[unit] > 0
    assert fast["ratio_to_baseline"] == pytest.approx(fast[unit] / hf[unit])
    assert hf["gflop_per_item_counted"] > 0.01
    if hf["device_kind"] == "cpu":
        assert hf["mfu"] is None and hf["peak_mem_gb"] is None
    assert {"torch", "transformers", "date", "device", "peak_mem_gb"} <= set(hf)
    if workload == "decode":
        assert fast["identical_to_generate"] == 1.0
    else:  # grouped lengths pad less than random batches of the same captions
        assert fast["padded_tokens_per_image"] <= hf["padded_tokens_per_image"]


def test_salesforce_configs():
    base, large = blip_config("base"), blip_config("large")
    assert base.text_config.vocab_size == large.text_config.vocab_size == 30524
    assert (base.vision_config.hidden_size, base.vision_config.num_hidden_layers) == (768, 12)
    assert (large.vision_config.hidden_size, large.vision_config.num_hidden_layers) == (1024, 24)
    assert large.text_config.encoder_hidden_size == 1024 and base.vision_config.patch_size == 16
    assert peak_tflops("NVIDIA H100 80GB HBM3", __import__("torch").bfloat16) == 989


def test_projection_arithmetic():
    rows = {(r["what"].split(",")[0], r["setup"].split(" (")[0].split(",")[0]): r for r in projection()}
    assert rows[("train BLIP-base", "seeds' setup")]["hours"] == pytest.approx(15 * 70_108 / 36 / 3600)
    assert rows[("train BLIP-base", "plain HF best")]["hours"] == pytest.approx(15 * 70_108 / 1494 / 3600)
    grid = rows[("seed-000 grid", "HF generate")]
    assert grid["rate_per_s"][3] == 79 and 57 < grid["rate_per_s"][5] < 79
