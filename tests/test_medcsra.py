"""MedCSRA (seed 002) model, data and thresholding; notebook 05's building blocks."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import ResNetConfig

from medcap_utils.data.batch_augment import AugmentConfig, augment_batch, random_affine_crop
from medcap_utils.models.medcsra import MedCSRA, build_medcsra, demo_resnet_config, load_resnet_backbone

K = 5


def _model(head="medcsra", **kw) -> MedCSRA:
    torch.manual_seed(0)
    model = build_medcsra(demo_resnet_config(8), K, head=head, classes=[f"C{i:07d}" for i in range(K)], **kw)
    return model.eval()


def test_medcsra_fusion_matches_hand_computation():
    model = _model()
    x = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        out = model(x)
        feats = model.backbone(pixel_values=x).last_hidden_state
        b, c, h, w = feats.shape
        flat = feats.reshape(b, c, h * w)
        head = model.head
        glob = flat.mean(-1) @ head.global_fc.weight.T + head.global_fc.bias
        att = torch.sigmoid(flat.transpose(1, 2) @ head.attention_proj.weight.T + head.attention_proj.bias)  # (B,N,C)
        attended = (flat * att.transpose(1, 2)).sum(-1)  # weighted sum over positions
        att_logits = attended @ head.attention_fc.weight.T + head.attention_fc.bias
    assert out.logits.shape == (3, K) and out.attention.shape == (3, h * w, c)
    assert out.feature_size == (h, w) and c == 8 * 16
    torch.testing.assert_close(out.global_logits, glob)
    torch.testing.assert_close(out.attention_logits, att_logits)
    torch.testing.assert_close(out.logits, 0.9 * glob + 0.1 * att_logits)
    # the fusion really mixes both branches: changing lambda changes the logits
    assert not torch.allclose(out.logits, glob, atol=1e-4)


@pytest.mark.parametrize("temperature", [1.0, 4.0, math.inf])
def test_csra_option_matches_zhu_wu_formula(temperature):
    model = _model("csra", temperature=temperature, lam=0.3)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        out = model(x)
        feats = model.backbone(pixel_values=x).last_hidden_state.flatten(2)  # (B, C, N)
        weight = model.head.classifier.weight.flatten(1)  # (K, C)
        scores = torch.einsum("kc,bcn->bkn", weight, feats) / weight.norm(dim=1)[None, :, None]
        base = scores.mean(-1)
        if math.isinf(temperature):
            att_logit = scores.max(-1).values
        else:
            att_logit = (scores * torch.softmax(temperature * scores, dim=-1)).sum(-1)
    torch.testing.assert_close(out.logits, base + 0.3 * att_logit)
    assert out.attention.shape == (2, K, feats.shape[-1])
    torch.testing.assert_close(out.attention.sum(-1), torch.ones(2, K))  # a distribution over positions per class


def test_attention_maps_decompose_the_attention_logit():
    model = _model()
    x = torch.rand(2, 3, 64, 64)
    maps = model.attention_maps(x, class_index=3)
    with torch.no_grad():
        out = model(x)
    assert maps.shape == (2, *out.feature_size)
    # each position's contribution plus the bias gives back the class's attention-branch logit
    torch.testing.assert_close(maps.flatten(1).sum(-1) + model.head.attention_fc.bias[3], out.attention_logits[:, 3])


def test_only_last_stage_and_heads_train():
    model = _model()
    stages = model.backbone.encoder.stages
    assert all(p.requires_grad for p in stages[-1].parameters())
    for module in [model.backbone.embedder, *stages[:-1]]:
        assert not any(p.requires_grad for p in module.parameters())
    assert all(p.requires_grad for p in model.head.parameters())
    loss = model.train()(torch.rand(2, 3, 64, 64)).logits.sum()
    loss.backward()
    assert model.backbone.embedder.embedder.convolution.weight.grad is None
    assert stages[-1].layers[0].layer[0].convolution.weight.grad is not None


def test_resnet101_channel_count_is_2048():
    # seed 002 writes 1024 channels; transformers' ResNet-101 layout ends with 2048 (no weights needed)
    cfg = ResNetConfig(depths=[3, 4, 23, 3], hidden_sizes=[256, 512, 1024, 2048], layer_type="bottleneck")
    model = build_medcsra(cfg, 7)
    assert model.channels == 2048 and model.head.attention_proj.in_features == 2048
    assert model.head.global_fc.weight.shape == (7, 2048)


def test_save_pretrained_round_trip_loads_by_path(tmp_path):
    model = _model("csra", temperature=math.inf)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        before = model(x).logits
    model.save_pretrained(tmp_path / "m")
    backbone = load_resnet_backbone(tmp_path / "m" / "backbone")  # the same loader real runs give a hub id
    assert backbone.config.hidden_sizes == model.backbone.config.hidden_sizes
    loaded = MedCSRA.from_pretrained(tmp_path / "m").eval()
    assert loaded.classes == model.classes and loaded.head_type == "csra" and math.isinf(loaded.temperature)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).logits, before)
    assert not any(p.requires_grad for p in loaded.backbone.embedder.parameters())


def test_augmentations_identity_flip_and_range():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 32, 32, generator=g)
    still = AugmentConfig(out_size=32, crop_scale=(1, 1), crop_ratio=(1, 1), hflip_p=0.0, max_rotation_deg=0,
                          brightness=0, contrast=0, saturation=0)
    torch.testing.assert_close(augment_batch(x, still), x, atol=1e-5, rtol=0)
    flipped = AugmentConfig(**{**still.__dict__, "hflip_p": 1.0})
    torch.testing.assert_close(random_affine_crop(x, flipped), x.flip(-1), atol=1e-5, rtol=0)
    y = augment_batch(x, AugmentConfig(out_size=48), g)
    assert y.shape == (4, 3, 48, 48) and y.min() >= 0 and y.max() <= 1
    assert not torch.allclose(y[0], y[1])  # per-image randomness


# ------------------------------------------------------------------------- data and thresholds
def test_class_set_threshold_counts_and_multi_hot():
    from medcap_utils.training.medcsra import build_class_set, multi_hot

    train = [["C1", "C2"], ["C1"], ["C1", "C3", "C1"], ["c2"]]
    cs = build_class_set(train, min_count=2)
    assert cs.cuis == ["C1", "C2"] and cs.counts == [3, 2] and cs.n_train_cuis == 3 and len(cs) == 2
    assert "2 classes" in cs.summary()
    y = multi_hot([["C2", "C9"], []], cs.cuis)
    assert y.tolist() == [[0.0, 1.0], [0.0, 0.0]]


def test_threshold_curve_and_argmax_selection():
    from medcap_utils.training.medcsra import THRESHOLDS, best_threshold, probs_to_concepts, threshold_curve

    assert THRESHOLDS[0] == 0.05 and THRESHOLDS[-1] == 0.55 and len(THRESHOLDS) == 11
    classes = ["A", "B", "C"]
    ids = ["i1", "i2"]
    probs = np.array([[0.9, 0.30, 0.10], [0.2, 0.45, 0.35]])
    assert probs_to_concepts(probs, ids, classes, 0.30) == {"i1": ["A"], "i2": ["B", "C"]}  # strict >
    gt = {"i1": ["A"], "i2": ["B"]}
    curve = threshold_curve(probs, ids, classes, gt)
    assert list(curve.columns) == ["threshold", "f1_per_image", "f1_micro"]
    # by hand: at 0.35..0.40 both images are exact -> 1.0; at 0.30 image 2 gets 2/3
    row = curve.set_index("threshold")
    assert row.loc[0.35, "f1_per_image"] == pytest.approx(1.0)
    assert row.loc[0.30, "f1_per_image"] == pytest.approx((1 + 2 / 3) / 2)
    assert row.loc[0.30, "f1_micro"] == pytest.approx(2 * 2 / (2 * 2 + 1))
    assert best_threshold(curve) == 0.35  # first maximum
    made_up = pd.DataFrame({"threshold": [0.1, 0.2, 0.3], "f1_per_image": [0.2, 0.6, 0.4], "f1_micro": [0.9, 0.1, 0.1]})
    assert best_threshold(made_up) == 0.2 and best_threshold(made_up, "f1_micro") == 0.1



def test_pixel_recipe_train_augments_eval_resizes():
    from medcap_utils.training.medcsra import IMAGENET_MEAN, PixelRecipe

    pixels = torch.full((2, 48, 48, 3), 255, dtype=torch.uint8)
    pixels[1] = 0
    authors = PixelRecipe(image_size=32, normalize=False, augment=AugmentConfig(out_size=32))
    x_train = authors(pixels, train=True, generator=torch.Generator().manual_seed(0))
    assert x_train.shape == (2, 3, 32, 32) and x_train.min() >= 0 and x_train.max() <= 1
    x_eval = authors(pixels, train=False)
    torch.testing.assert_close(x_eval[0], torch.ones(3, 32, 32))  # plain [0, 1] pixels, no jitter
    paper = PixelRecipe(image_size=32, normalize=True)
    x = paper(pixels, train=True)  # no augmentation configured: training input = evaluation input
    torch.testing.assert_close(x[1, 0], torch.full((32, 32), -IMAGENET_MEAN[0] / 0.229))


def test_training_with_csra_head_and_augmentations_keeps_best_copy(demo_root, tmp_path):
    """A few steps with the CSRA head and the authors' augmentations: the history carries the sweep's
    metrics and the returned model gives the same outputs as the best copy saved by the trainer."""
    from medcap_utils.experiments.concept_detection_medcsra import load_recipe
    from medcap_utils.training import medcsra as cd

    recipe = load_recipe("configs/recipes/medcsra-2025.yaml", "demo")
    recipe["model"].update(head="csra", temperature=2.0, width=8)
    recipe["data"].update(cache_size=64, image_size=64, normalize=False,
                          augment={"crop_scale": [0.8, 1.0], "max_rotation_deg": 15.0})
    run = cd.train_medcsra(demo_root, recipe, output_dir=tmp_path / "m", epochs=2, max_steps=6)
    assert {"train_loss", "val_loss", "val_f1", "val_f1_micro", "val_threshold"} <= set(run.history.columns)
    assert run.history["val_threshold"].between(0.05, 0.55).all()
    saved = MedCSRA.from_pretrained(tmp_path / "m" / "best").eval()
    assert saved.head_type == "csra" and saved.classes == run.classes.cuis
    x = run.recipe(run.valid[0]["pixels"][None], train=False)
    with torch.no_grad():
        torch.testing.assert_close(run.model.eval()(x).logits, saved(x).logits)

# ------------------------------------------------------------------------------ demo (item 5)
@pytest.mark.slow
def test_demo_detector_recovers_modality_and_region_far_above_frequency_baseline(demo_root, tmp_path):
    """Trained on the small demo set, MedCSRA must find modality and body-region CUIs on test images
    far better than predicting the k most frequent training CUIs for every image."""
    from medcap_utils.data.synth import MODALITY_CUI, REGION_CUIS
    from medcap_utils.evaluation.baselines import top_k_concepts
    from medcap_utils.experiments.concept_detection_medcsra import load_recipe
    from medcap_utils.metrics.concepts import f1_primary, per_image_f1
    from medcap_utils.training import medcsra as cd

    recipe = load_recipe("configs/recipes/medcsra-2025.yaml", "demo")
    run = cd.train_medcsra(demo_root, recipe, output_dir=tmp_path / "model", epochs=6)
    assert run.history["val_f1"].iloc[-1] > run.history["val_f1"].iloc[0]  # it learns
    assert (tmp_path / "model" / "best" / "medcsra.json").exists()

    curve = cd.threshold_curve(cd.predict_probs(run.model, run.valid, run.recipe), run.valid.ids,
                               run.classes.cuis, run.valid.ground_truth())
    threshold = cd.best_threshold(curve)
    test = cd.ConceptImages(demo_root, "test", run.classes.cuis, run.train.cache.size)
    pred = cd.probs_to_concepts(cd.predict_probs(run.model, test, run.recipe), test.ids, run.classes.cuis, threshold)
    gt = test.ground_truth()
    train_cuis = run.train.frame["cuis"].tolist()
    k = int(np.median([len(c) for c in train_cuis]))
    baseline = {i: top_k_concepts(train_cuis, k) for i in gt}

    def mean_f1(p, allowed):
        return float(np.mean(list(per_image_f1(gt, p, allowed).values())))

    modality = set(MODALITY_CUI.values())
    modality_region = modality | {c for cuis in REGION_CUIS.values() for c in cuis}
    det_mr, base_mr = mean_f1(pred, modality_region), mean_f1(baseline, modality_region)
    det_mod, base_mod = mean_f1(pred, modality), mean_f1(baseline, modality)
    print(f"modality+region F1 {det_mr:.3f} vs baseline {base_mr:.3f}; modality {det_mod:.3f} vs {base_mod:.3f}; "
          f"primary {f1_primary(gt, pred):.3f} vs {f1_primary(gt, baseline):.3f}")
    assert det_mr >= base_mr + 0.25 and det_mr >= 1.6 * base_mr
    assert det_mod >= base_mod + 0.3
    assert f1_primary(gt, pred) >= f1_primary(gt, baseline) + 0.15


def test_a_finished_detector_is_reused_by_the_one_rule_and_a_changed_setting_is_not(demo_root, tmp_path, monkeypatch,
                                                                                    capsys):
    """train_medcsra saves ``final/`` with its settings; the same recipe loads it without training (same history
    and outputs), a changed learning rate is refused naming it, a corrupted file trains again
    (medcap_utils.training.reuse.should_reuse, as notebooks 02-04 and 07 use it)."""
    from medcap_utils.experiments.concept_detection_medcsra import load_recipe
    from medcap_utils.training import medcsra as cd

    recipe = load_recipe("configs/recipes/medcsra-2025.yaml", "demo")
    recipe["model"].update(width=8)
    recipe["data"].update(cache_size=64, image_size=64)
    out = tmp_path / "m"
    first = cd.train_medcsra(demo_root, recipe, output_dir=out, epochs=1, max_steps=3)
    assert (out / "final" / "checksums.sha256").is_file()

    def no_training(*args, **kwargs):
        raise AssertionError("trained although a finished detector with the same settings was saved")

    with monkeypatch.context() as m:
        m.setattr(cd, "fit", no_training)
        again = cd.train_medcsra(demo_root, recipe, output_dir=out, epochs=1, max_steps=3)
    assert "reusing it" in capsys.readouterr().out
    pd.testing.assert_frame_equal(again.history, first.history, check_dtype=False)
    x = first.recipe(first.valid[0]["pixels"][None], train=False)
    with torch.no_grad():
        torch.testing.assert_close(again.model.eval()(x).logits, first.model.eval()(x).logits)

    changed = {**recipe, "train": {**recipe["train"], "lr": recipe["train"]["lr"] * 10}}
    with pytest.raises(ValueError, match=r"train\.lr"):
        cd.train_medcsra(demo_root, changed, output_dir=out, epochs=1, max_steps=3)

    head = out / "final" / "model" / "head.pt"
    head.write_bytes(head.read_bytes()[:-8])  # truncated: the folder no longer matches its checksums
    calls = []
    with monkeypatch.context() as m:
        m.setattr(cd, "fit", lambda *a, **k: calls.append(1) or no_training())
        with pytest.raises(AssertionError, match="trained although"):
            cd.train_medcsra(demo_root, recipe, output_dir=out, epochs=1, max_steps=3)
    assert calls == [1] and "training again" in capsys.readouterr().out


@pytest.mark.parametrize("head", ["medcsra", "csra"])
def test_a_single_branch_model_outputs_that_branch_and_the_same_weights_fuse_in_both(head):
    """The branch ablation of notebook 05: with the same weights, ``branches`` changes only which logits come out."""
    x = torch.rand(2, 3, 64, 64)
    outs = {}
    for branches in ("both", "global", "attention"):
        model = _model(head, branches=branches)  # same seed: same weights
        with torch.no_grad():
            outs[branches] = model(x)
        assert outs[branches].logits.shape == (2, K) and model.branches == branches
    both, glob, att = outs["both"], outs["global"], outs["attention"]
    torch.testing.assert_close(glob.logits, glob.global_logits)
    torch.testing.assert_close(att.logits, att.attention_logits)
    torch.testing.assert_close(glob.global_logits, both.global_logits)
    torch.testing.assert_close(att.attention_logits, both.attention_logits)
    fused = (both.global_logits if head == "csra" else 0.9 * both.global_logits) + 0.1 * both.attention_logits
    torch.testing.assert_close(both.logits, fused)
    assert not torch.allclose(both.logits, glob.logits, atol=1e-4) and not torch.allclose(both.logits, att.logits,
                                                                                         atol=1e-4)


def test_an_unknown_branch_is_refused_and_the_branch_survives_save_and_load(tmp_path):
    with pytest.raises(ValueError, match="branches must be one of"):
        _model(branches="local")
    model = _model(branches="attention")
    x = torch.rand(2, 3, 64, 64)
    model.save_pretrained(tmp_path / "m")
    loaded = MedCSRA.from_pretrained(tmp_path / "m").eval()
    assert loaded.branches == "attention" and loaded.head.branches == "attention"
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).logits, model(x).attention_logits)


def test_the_recipe_branch_reaches_the_model():
    from medcap_utils.training.medcsra import build_model

    assert build_model({"backbone": "demo", "width": 8, "branches": "global"}, ["C1", "C2"]).branches == "global"
    assert build_model({"backbone": "demo", "width": 8}, ["C1", "C2"]).branches == "both"
