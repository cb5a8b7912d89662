"""Clear errors for a checkpoint that is missing from the offline cache or corrupt in it, and the
``python -m medcap_utils.hub list|download`` command, against a small stand-in cache."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from medcap_utils import hub
from medcap_utils.testing.local_hub import write_local_hub

REPO = Path(__file__).resolve().parents[1]
RESNET = "microsoft/resnet-50"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A fresh stand-in cache with one small checkpoint, made huggingface_hub's cache for this test."""
    from huggingface_hub import constants

    write_local_hub(tmp_path, [RESNET])
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return tmp_path / "hub"


def blob_of(cache: Path, name: str) -> Path:
    return hub.cached_snapshot(RESNET, cache).joinpath(name).resolve()


def test_stand_in_loads_and_a_missing_id_names_the_fix(cache):
    from transformers import ResNetModel

    from medcap_utils.models.medcsra import load_resnet_backbone

    assert type(hub.from_pretrained(ResNetModel, RESNET)).__name__ == "ResNetModel"
    with pytest.raises(hub.HubModelError) as err:
        load_resnet_backbone("microsoft/resnet-101")  # a project loader, not cached here
    msg = str(err.value)
    for part in ("microsoft/resnet-101", "not in the local Hugging Face cache", str(cache), "HF_HUB_OFFLINE=1",
                 "make models PROFILE=rocov2", "hf download microsoft/resnet-101"):
        assert part in msg, part


def test_truncated_weights_name_the_file_and_the_fix(cache):
    from transformers import ResNetModel

    blob = blob_of(cache, "model.safetensors")
    blob.write_bytes(blob.read_bytes()[: blob.stat().st_size // 2])
    with pytest.raises(hub.HubModelError) as err:
        hub.from_pretrained(ResNetModel, RESNET)
    msg = str(err.value)
    for part in (RESNET, "model.safetensors", "truncated", "delete the corrupt snapshot",
                 str(cache / "models--microsoft--resnet-50"), "make models PROFILE=rocov2"):
        assert part in msg, part


def test_bad_safetensors_header(cache):
    from transformers import ResNetModel

    blob = blob_of(cache, "model.safetensors")
    blob.write_bytes(b"\xff" * 8 + blob.read_bytes()[8:])  # header length far beyond the file
    with pytest.raises(hub.HubModelError, match="model.safetensors is truncated"):
        hub.from_pretrained(ResNetModel, RESNET)


def test_truncated_config_names_the_file(cache):
    from medcap_utils.models.lstm_captioner import load_visual_encoder

    blob = blob_of(cache, "config.json")
    blob.write_text(blob.read_text()[:40])
    with pytest.raises(hub.HubModelError) as err:
        load_visual_encoder(RESNET)
    msg = str(err.value)
    assert RESNET in msg and "config.json is corrupt" in msg and "hf download microsoft/resnet-50" in msg


def test_corrupt_local_folder_names_the_folder(tmp_path):
    from transformers import ResNetConfig, ResNetModel

    ResNetModel(ResNetConfig(hidden_sizes=[8, 16], depths=[1, 1], embedding_size=8)).save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(hub.HubModelError, match=r"model.safetensors is truncated.*save_pretrained"):
        hub.from_pretrained(ResNetModel, tmp_path)


def test_other_errors_pass_through(cache):
    from transformers import ResNetModel

    with pytest.raises(TypeError):  # not a cache problem: the caller's own mistake stays as it was
        hub.from_pretrained(ResNetModel, RESNET, no_such_argument=object())


def run_cli(args, hf_home):
    env = {**os.environ, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    env.pop("HF_HUB_CACHE", None)
    return subprocess.run([sys.executable, "-m", "medcap_utils.hub", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_list_shows_uses_cache_state_and_total(tmp_path):
    snap = write_local_hub(tmp_path, [RESNET])[RESNET]
    out = run_cli(["list", "--profile", "rocov2"], tmp_path)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    size = hub.human(hub.folder_size(snap))
    assert f"{RESNET}  cached {size}" in text
    assert "configs/recipes/xai-lstm-2021.yaml:paper.model.encoder -> 07_explainable_lstm_captioner" in text
    assert "Salesforce/blip-image-captioning-base  NOT CACHED" in text
    assert "facebook/sam-vit-big  excluded:" in text
    assert f"total cached: {size} in {tmp_path / 'hub'}" in text


def test_download_offline_reports_cached_sizes_and_fails_by_name(tmp_path):
    snap = write_local_hub(tmp_path, [RESNET])[RESNET]
    ok = run_cli(["download", "--ids", RESNET], tmp_path)
    assert ok.returncode == 0, ok.stderr
    size = hub.human(hub.folder_size(snap))
    assert f"{RESNET}  {size}  {snap}" in ok.stdout and f"total: {size}" in ok.stdout
    bad = run_cli(["download", "--ids", RESNET, "acme/not-cached"], tmp_path)
    assert bad.returncode == 1
    assert "error: acme/not-cached: offline (HF_HUB_OFFLINE=1) and not cached" in bad.stderr
    assert "Traceback" not in bad.stderr and f"{RESNET}  {size}" in bad.stdout
