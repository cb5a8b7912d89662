"""`python -m medcap_utils.runner.caption`: one caption per image file, the same as the Python function, and a
dataset-split run written as a valid ImageCLEF run directory."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medcap_utils.models.blip import build_demo_blip
from medcap_utils.runner.caption import DEFAULT_DECODING, caption_images, caption_split_to_run_dir

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    caps = ["Axial CT of the chest.", "Knee radiograph showing a fracture.", "Brain MRI without abnormality."] * 4
    return build_demo_blip(tmp_path_factory.mktemp("cli") / "blip", caps, vocab_size=120, image_size=32,
                           vision_hidden=32, vision_layers=1, text_hidden=32, text_layers=1, heads=2)


def test_cli_prints_one_caption_per_image_like_the_function(model_dir, tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i, mode in enumerate(["RGB", "L", "RGBA"]):  # grey and alpha images are converted to RGB
        path = tmp_path / f"img{i}.png"
        Image.fromarray(rng.integers(0, 256, (40 + i, 50, 3), dtype=np.uint8)).convert(mode).save(path)
        paths.append(path)
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "medcap_utils.runner.caption", "--model", str(model_dir),
                           "--max-new-tokens", "6", *map(str, paths)], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.rstrip("\n").split("\n")
    assert lines == caption_images(str(model_dir), paths, DEFAULT_DECODING.replace(max_new_tokens=6))
    assert len(lines) == 3


def test_cli_without_images_is_an_error(model_dir):
    proc = subprocess.run([sys.executable, "-m", "medcap_utils.runner.caption", "--model", str(model_dir)],
                          capture_output=True, text=True, cwd=REPO, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode != 0 and "IMAGE" in proc.stderr


def test_split_run_is_a_valid_imageclef_run(model_dir, demo_root, tmp_path):
    from medcap_utils.data.rocov2 import split_frame
    from medcap_utils.evaluation.runfiles import read_run_dir, read_run_file

    run_dir = caption_split_to_run_dir(str(model_dir), demo_root, "test", "cli_test",
                                       DEFAULT_DECODING.replace(max_new_tokens=5), runs_root=tmp_path)
    info, run_file = read_run_dir(run_dir)
    ids = split_frame(demo_root, "test")["id"].tolist()
    preds = read_run_file(run_file, "captions", valid_ids=ids, require_all=True)
    assert sorted(preds) == sorted(ids)
    assert info["split"] == "test" and info["meta"]["num_beams"] == 1 and info["meta"]["captions_per_s"] > 0


def test_cli_captions_with_a_hub_id_from_the_local_cache(tmp_path):
    """The README's `--model Salesforce/blip-image-captioning-base` offline: the id resolves through
    huggingface_hub's cache lookup in HF_HOME (a stand-in cache in the real layout), nothing maps paths."""
    from medcap_utils.testing.local_hub import write_local_hub

    hub_id = "Salesforce/blip-image-captioning-base"
    write_local_hub(tmp_path / "hf", ids=[hub_id])
    rng = np.random.default_rng(1)
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"img{i}.png")
        Image.fromarray(rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)).save(paths[-1])
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "medcap_utils.runner.caption", "--model", hub_id, "--max-new-tokens", "6",
           *map(str, paths)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.strip().splitlines()) == 3
    missing = subprocess.run([*cmd[:4], "Salesforce/blip-image-captioning-large", *map(str, paths)],
                             capture_output=True, text=True, env=env, cwd=REPO)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "Salesforce/blip-image-captioning-large" in missing.stderr and "make models" in missing.stderr
