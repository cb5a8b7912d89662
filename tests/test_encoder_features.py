"""The nearest-neighbour baseline by a pretrained encoder's features (medcap_utils.evaluation.encoder_features)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from medcap_utils.data.rocov2 import read_captions, split_files
from medcap_utils.evaluation import evaluate_runs
from medcap_utils.evaluation.encoder_features import encoder_features
from medcap_utils.evaluation.runfiles import read_run_dir, read_run_file


@pytest.fixture(scope="module")
def blip_dir(demo_root, tmp_path_factory):
    from medcap_utils.models.blip import build_demo_blip

    captions = list(read_captions(split_files(demo_root, "train")["captions"]).Caption)
    return build_demo_blip(tmp_path_factory.mktemp("enc") / "blip", captions, vocab_size=200, image_size=32,
                           vision_hidden=32, vision_layers=1, text_hidden=32, text_layers=1, heads=2, patch_size=16)


def test_blip_features_are_the_vision_encoders_mean_state(demo_root, blip_dir):
    from medcap_utils.data.cache import get_image_cache, normalize_uint8
    from medcap_utils.models.blip import load_blip

    ids, feats = encoder_features(demo_root, "test", blip_dir, batch_size=16)
    assert feats.shape == (40, 32) and len(ids) == 40
    assert np.allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)
    # recomputed by hand for one image: the vision transformer's mean last hidden state, unit length
    model, processor = load_blip(blip_dir)
    cache = get_image_cache(demo_root, "test", 32)
    ip = processor.image_processor
    pv = normalize_uint8(torch.from_numpy(np.array(cache[ids[7]]))[None], ip.image_mean, ip.image_std)
    with torch.no_grad():
        ref = model.vision_model(pixel_values=pv).last_hidden_state.mean(1)[0].numpy()
    assert np.allclose(feats[7], ref / np.linalg.norm(ref), atol=1e-5)
    # images differ, so features differ (a constant encoder would make retrieval a constant caption)
    assert len({tuple(np.round(f, 4)) for f in feats}) > 30


def test_resnet_features_are_pooled(demo_root, tmp_path):
    from transformers import ResNetConfig, ResNetModel

    config = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")
    ResNetModel(config).save_pretrained(tmp_path / "resnet")
    ids, feats = encoder_features(demo_root, "valid", tmp_path / "resnet")
    assert feats.shape == (40, 16)


def test_unknown_or_missing_encoder_is_refused(demo_root, tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        encoder_features(demo_root, "test", tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "gpt2"}')
    with pytest.raises(ValueError, match="model_type 'gpt2'"):
        encoder_features(demo_root, "test", tmp_path)


def test_encoder_baseline_run_retrieves_its_own_caption_on_train(demo_root, blip_dir, tmp_path):
    """Retrieving the train split against itself, each image's nearest neighbour is itself (or an identical
    image), so the run must reproduce the ground truth; on test it is a real run in the official format."""
    runs = tmp_path / "runs"
    made = evaluate_runs.make_baseline_runs(str(demo_root), "train", 2, runs, encoder_dir=str(blip_dir))
    assert "baseline-nn-encoder" in [p.name for p in made]
    info, run_file = read_run_dir(runs / "baseline-nn-encoder")
    gt = dict(zip(*read_captions(split_files(demo_root, "train")["captions"])[["ID", "Caption"]].T.values))
    pred = read_run_file(run_file, "captions", valid_ids=gt)
    assert np.mean([pred[i] == gt[i] for i in gt]) > 0.95
    assert info["meta"]["distance"] == "cosine"


def test_missing_encoder_folder_writes_no_run_and_says_so(demo_root, tmp_path, capsys):
    made = evaluate_runs.make_baseline_runs(str(demo_root), "test", 2, tmp_path / "runs",
                                            encoder_dir=str(tmp_path / "absent"))
    assert "baseline-nn-encoder" not in [p.name for p in made]
    assert "baseline-nn-encoder not written" in capsys.readouterr().out
