"""MedBLIP ablation on a tiny BLIP: each variant changes exactly the parts it should, its training
time is recorded, and the comparison models train through the same loop and write run directories."""
import pandas as pd
import pytest
import torch

from medcap_utils.experiments import medblip_ablation as ab
from medcap_utils.models.blip import build_demo_blip, load_blip
from medcap_utils.training import TrainConfig
from medcap_utils.training.captioning_data import caption_dataset


@pytest.fixture(scope="module")
def setup(demo_root, tmp_path_factory):
    train = caption_dataset(demo_root, "train", 32, limit=16)
    init = tmp_path_factory.mktemp("init")
    build_demo_blip(init, train.captions, vocab_size=120, image_size=32, patch_size=8, vision_hidden=32,
                    vision_layers=1, text_hidden=32, text_layers=1, heads=4)
    cfg = TrainConfig(epochs=1, lr=1e-3, batch_size=8, progress=False)
    return init, train, cfg


def _changed(before: dict, model, prefix: str) -> bool:
    return any(not torch.equal(before[k], v) for k, v in model.state_dict().items() if k.startswith(prefix))


@pytest.mark.parametrize("variant,vision_moves,text_moves", [
    ("zero_shot", False, False), ("full", True, True), ("decoder_only", False, True), ("encoder_only", True, False)])
def test_variant_trains_only_its_parts(setup, variant, vision_moves, text_moves):
    init, train, cfg = setup
    before = {k: v.clone() for k, v in load_blip(init)[0].state_dict().items()}
    model, _, info = ab.run_blip_variant(variant, init, train, cfg, max_length=32)
    assert _changed(before, model, "vision_model.") == vision_moves
    assert _changed(before, model, "text_decoder.") == text_moves
    assert (info["train_time_s"] > 0) == (variant != "zero_shot")
    total = sum(p.numel() for p in model.parameters())
    assert info["total_params"] == total
    vision = sum(p.numel() for p in model.vision_model.parameters())
    expected = {"zero_shot": total, "full": total, "decoder_only": total - vision,
                "encoder_only": total - sum(p.numel() for p in model.text_decoder.parameters())}[variant]
    assert info["trainable_params"] == expected
    assert all(p.requires_grad for p in model.parameters())  # handed back fully trainable


def test_time_table_is_relative_to_full():
    table = ab.time_table([{"variant": "full", "train_time_s": 10.0}, {"variant": "decoder_only", "train_time_s": 9.5}])
    assert table.set_index("variant")["time_vs_full"].to_dict() == pytest.approx({"full": 1.0, "decoder_only": 0.95})


@pytest.mark.parametrize("kind", ["vit_gpt2", "blip2", "instructblip"])
def test_comparison_model_trains_and_scores(setup, demo_root, kind, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDCAP_ROOT", str(tmp_path))
    (tmp_path / "pyproject.toml").write_text("")
    _, train, cfg = setup
    captioner, info = ab.baseline_captioner(kind, tmp_path / kind, train, cfg, {"hidden_size": 32, "patch_size": 8},
                                            max_length=32)
    assert info["train_time_s"] > 0 and info["steps"] == 2 and info["trainable_params"] == info["total_params"]
    assert captioner.image_size == 32
    test = caption_dataset(demo_root, "test", 32, limit=4)
    row, preds = ab.score_model(kind, captioner, test, demo_root, max_new_tokens=8)
    assert list(preds) == test.ids
    assert set(ab.SCORES) <= set(row) and 0 <= row["modality_rate"] <= 1
    lines = (tmp_path / "reports" / "runs" / f"medblip_{kind}" / "captions.csv").read_text().splitlines()
    assert len(lines) == 1 + len(test)
    assert isinstance(pd.read_csv(tmp_path / "reports" / "runs" / f"medblip_{kind}" / "per_image.csv"), pd.DataFrame)


def test_zero_shot_model_too_big_for_the_gpu_is_skipped_before_loading(tmp_path, monkeypatch):
    """Notebook 03 on a 16 GB T4: InstructBLIP Vicuna-7b is skipped up front with a message (weights are never
    read: the folder holds only the real config.json), while BLIP-2's row is left to load."""
    from test_precision import fake_gpu, instructblip_7b_config

    from medcap_utils.experiments import medblip_ablation as ab

    folder = tmp_path / "instructblip-vicuna-7b"
    instructblip_7b_config().save_pretrained(folder)
    fake_gpu(monkeypatch, "Tesla T4", (7, 5), 15)
    captioner, info = ab.baseline_captioner("instructblip", str(folder))
    assert captioner is None
    assert "skipped" in info["skipped"] and "T4" in info["skipped"] and "GiB" in info["skipped"]


def test_notebook_03_trains_with_the_recipe_demo_section_and_prints_it():
    """Issue 17: 03's parameters no longer override the recipe's demo section (zeros = the recipe's); BLIP starts
    from the pretrained stand-in; only the comparison models keep from-scratch settings, and both are printed."""
    import json

    from medcap_utils.paths import repo_root

    cells = json.loads((repo_root() / "notebooks" / "03_medblip_ablation.ipynb").read_text())["cells"]
    params = "".join(next(c for c in cells if "parameters" in c["metadata"].get("tags", []))["source"])
    for line in ("epochs: int = 0", "lr: float = 0.0", "batch_size: int = 0", "warmup_steps: int = 0",
                 "width: int = 0"):
        assert line in params, line
    recipe = ab.ablation_recipe("demo", width=32)
    assert recipe["model"] == "models/standins/blip-captioning-general" and recipe["build"] == {}  # width: not BLIP's
    cfg, comparison = recipe["train"], ab.comparison_config(recipe, "demo")
    assert cfg.lr < comparison.lr == ab.COMPARISON_DEMO_TRAIN["lr"]
    assert ab.comparison_config(ab.ablation_recipe("rocov2"), "rocov2") == ab.ablation_recipe("rocov2")["train"]
    text = ab.settings_text(recipe, "demo")
    assert f"lr {cfg.lr:g}" in text and f"lr {comparison.lr:g}" in text and recipe["model"] in text
    overridden = ab.ablation_recipe("demo", epochs=5, lr=1e-2)
    assert (overridden["train"].epochs, overridden["train"].lr) == (5, 1e-2)  # a parameter set on purpose still wins
