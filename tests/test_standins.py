"""The demo's pretrained stand-ins (issue 17): the general synthetic domain says what it draws, the BLIP stand-in's
cut vocabulary tokenises like BERT's, and the stand-in is pretrained through the project's trainer, loads like a hub
checkpoint, is reused while its recipe is unchanged and rebuilt when it changes."""
import json

import numpy as np
import pytest
from PIL import Image

from medcap_utils.data.synth_general import COLOURS, PLACES, caption_of, synthesize_general


def test_general_domain_is_deterministic(tmp_path):
    a = synthesize_general(tmp_path / "a", seed=3, n_train=12, n_valid=4)
    synthesize_general(tmp_path / "b", seed=3, n_train=12, n_valid=4)
    other = synthesize_general(tmp_path / "c", seed=4, n_train=12, n_valid=4)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) == 12 + 4 + 2 * 4 + 2  # images, 4 CSVs per split, cui mapping, licences
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    assert (tmp_path / "a" / "train_captions.csv").read_bytes() != (tmp_path / "c" / "train_captions.csv").read_bytes()
    assert a["splits"] == {"train": 12, "valid": 4} and other["seed"] == 4


def _shapes(field: str) -> list[dict]:
    out = []
    for part in field.split(";"):
        size, colour, kind, cell = part.split(":")
        out.append({"size": size, "colour": colour, "kind": kind, "cell": (int(cell[0]), int(cell[1]))})
    return out


def test_general_captions_name_the_shapes_drawn(tmp_path):
    """Each caption names every shape's size, colour, kind and place in reading order, and the pixel at the centre
    of each named place has the named colour (so the words are in the image, not only in the truth table)."""
    import pandas as pd

    from medcap_utils.data.rocov2 import split_frame

    root = tmp_path / "general"
    synthesize_general(root, seed=0, n_train=40, n_valid=0)
    truth = pd.read_csv(root / "train_general_truth.csv").set_index("ID")
    frame = split_frame(root, "train")  # the project's reader takes the layout
    assert frame["cuis"].map(len).eq(0).all()  # no UMLS concepts in the general domain
    palette = {name: np.array(rgb, float) for name, rgb in COLOURS.items()}
    for image_id, caption in zip(frame["id"], frame["caption"]):
        row = truth.loc[image_id]
        shapes = _shapes(row["shapes"])
        assert len(shapes) == row["n_shapes"] and caption == caption_of({"shapes": shapes,
                                                                          "background": row["background"]})
        phrases = [f"{s['size']} {s['colour']} {s['kind']} {PLACES[s['cell']]}" for s in shapes]
        positions = [caption.index(p) for p in phrases]  # every shape named, in reading order
        assert positions == sorted(positions)
        pixels = np.asarray(Image.open(root / "train" / f"{image_id}.jpg").convert("RGB"), float)
        side = pixels.shape[0] / 3
        for s in shapes:
            y, x = int((s["cell"][0] + 0.5) * side), int((s["cell"][1] + 0.5) * side)
            rgb = pixels[y - 1:y + 2, x - 1:x + 2].reshape(-1, 3).mean(0)
            nearest = min(palette, key=lambda name: np.abs(palette[name] - rgb).sum())
            assert nearest == s["colour"], (image_id, s, rgb)
    # the check can fail: a caption of another scene does not match this one's truth
    first = _shapes(truth.iloc[0]["shapes"])
    swapped = [{**first[0], "colour": next(c for c in COLOURS if c != first[0]["colour"])}, *first[1:]]
    assert caption_of({"shapes": swapped, "background": truth.iloc[0]["background"]}) != frame["caption"].iloc[0]


def test_cut_vocabulary_tokenises_like_full_bert(tmp_path, demo_root):
    """The stand-in keeps only the BERT pieces its texts use; every such text gets exactly BERT's pieces."""
    from medcap_utils.data.rocov2 import split_frame
    from medcap_utils.models.blip import blip_tokenizer
    from medcap_utils.models.blip_standin import pruned_tokenizer, used_pieces

    synthesize_general(tmp_path / "g", seed=0, n_train=30, n_valid=0)
    texts = [*split_frame(tmp_path / "g", "train")["caption"], *split_frame(demo_root, "train")["caption"]]
    full = blip_tokenizer("bert-uncased")
    pieces = used_pieces(texts, full)
    cut = pruned_tokenizer(pieces)
    assert len(cut) < 2000 < len(full)
    for text in texts:
        assert cut.tokenize(text) == full.tokenize(text)
    assert cut.tokenize("xylophone") != full.tokenize("xylophone")  # the check can fail: a word it was not cut for


TINY = """
blip-captioning-general:
  out: {out}
  data: {{dir: {data}, seed: 0, n_train: 96, n_valid: 16}}
  vocab_from: [{data}]
  image_size: 32
  patch_size: 8
  vision_hidden: 32
  vision_layers: 1
  vision_heads: 4
  text_layers: 1
  max_length: 32
  eval_images: 16
  decoding: {{num_beams: 1, max_new_tokens: 30, no_repeat_ngram_size: 0}}
  train: {{epochs: 10, lr: {lr}, batch_size: 16, warmup_steps: 2, scheduler: cosine, progress: false, seed: 0,
          num_workers: 0}}
"""


@pytest.fixture(scope="module")
def tiny_standin(tmp_path_factory):
    from medcap_utils.training.standins import build_standins

    root = tmp_path_factory.mktemp("standin")
    recipe = root / "standins.yaml"
    out = root / "models" / "standins" / "blip-captioning-general"
    recipe.write_text(TINY.format(out=out, data=root / "general", lr="3.0e-3"))
    info = build_standins("blip-captioning-general", recipe_path=recipe)["blip-captioning-general"]
    return root, recipe, out, info


@pytest.mark.slow
def test_standin_pretraining_lowers_the_loss_and_captions_differ(tiny_standin):
    _, _, _, info = tiny_standin
    assert info["steps"] == 10 * 6  # 96 scenes, batch 16, 10 epochs: the project's trainer ran every step
    assert info["last_epoch_loss"] < 0.8 * info["first_epoch_loss"]
    assert info["valid_distinct_captions"] >= 2  # a floor: a model that writes one caption for all is not pretrained
    assert info["valid_images"] == 16 and 0 <= info["valid_bleu4"] <= 1
    assert info["text_init"].startswith("MiniLM") and info["vocab_size"] < 200


@pytest.mark.slow
def test_standin_loads_like_a_hub_checkpoint_and_recipes_start_from_it(tiny_standin):
    from transformers import BlipForConditionalGeneration

    from medcap_utils.models.blip import load_blip
    from medcap_utils.training.blip import model_source, start_model

    _, _, out, _ = tiny_standin
    model, processor = load_blip(out)
    assert isinstance(model, BlipForConditionalGeneration) and processor.tokenizer.bos_token == "[DEC]"
    assert start_model({"model": str(out)}, "unused", "unused") == str(out)
    assert model_source("Salesforce/blip-image-captioning-base") == "Salesforce/blip-image-captioning-base"
    with pytest.raises(FileNotFoundError, match="medcap standins"):
        model_source(str(out.parent / "not-built-yet"))


@pytest.mark.slow
def test_standin_is_reused_while_its_recipe_is_unchanged_and_rebuilt_when_it_changes(tiny_standin, monkeypatch,
                                                                                     capsys):
    import medcap_utils.training.blip as blip_training
    from medcap_utils.training.standins import build_standins

    root, recipe, out, info = tiny_standin

    def refuse(*args, **kwargs):
        raise AssertionError("trained although the recipe did not change")

    monkeypatch.setattr(blip_training, "finetune_blip", refuse)
    again = build_standins("blip-captioning-general", recipe_path=recipe)["blip-captioning-general"]
    assert again == json.loads(json.dumps(info, default=str)) and "reusing it" in capsys.readouterr().out
    monkeypatch.undo()
    recipe.write_text(TINY.format(out=out, data=root / "general", lr="1.0e-3"))
    rebuilt = build_standins("blip-captioning-general", recipe_path=recipe)["blip-captioning-general"]
    assert "recipe (or vocabulary source) changed" in capsys.readouterr().out
    assert rebuilt["recipe_hash"] != info["recipe_hash"] and rebuilt["train"]["lr"] == 1e-3
    assert json.loads((out / "standin.json").read_text())["key"] == rebuilt["key"]


def test_a_recipe_naming_a_missing_stand_in_says_which_command_builds_it(tmp_path, monkeypatch):
    from medcap_utils.training.blip import start_model

    monkeypatch.setenv("MEDCAP_ROOT", str(tmp_path))  # a checkout where `medcap standins` has not run
    with pytest.raises(FileNotFoundError, match=r"blip-captioning-general: no finished stand-in.*medcap standins"):
        start_model({"model": "models/standins/blip-captioning-general"}, "data/demo", tmp_path / "out")
    half = tmp_path / "models" / "standins" / "blip-captioning-general"
    half.mkdir(parents=True)
    (half / "config.json").write_text("{}")  # a build killed before its checksums: refused the same way
    with pytest.raises(FileNotFoundError, match="medcap standins"):
        start_model({"model": "models/standins/blip-captioning-general"}, "data/demo", tmp_path / "out")


# ---- the ImageNet stand-in: resnet-classifier-general -------------------------------------------------------

def test_scene_classes_are_what_the_truth_table_says_the_scene_holds(tmp_path):
    import pandas as pd

    from medcap_utils.training.standin_resnet import class_names, label_matrix, scene_classes

    assert scene_classes("small:red:circle:00;large:blue:star:22", "striped") == {
        "circle", "star", "red", "blue", "red circle", "blue star", "small shape", "large shape", "striped background"}
    synthesize_general(tmp_path, seed=0, n_train=20, n_valid=0)
    truth = pd.read_csv(tmp_path / "train_general_truth.csv")
    labels = label_matrix(tmp_path, "train", list(truth["ID"]))
    names = class_names()
    assert labels.shape == (20, len(names)) == (20, 44) and len(set(names)) == 44
    for row, (_, scene) in zip(labels, truth.iterrows()):
        kinds = {s.split(":")[2] for s in scene["shapes"].split(";")}
        assert {n for n, v in zip(names, row) if v and n in {"circle", "square", "triangle", "star"}} == kinds
        assert row[names.index(f"{scene['background']} background")] == 1 and row.sum() >= 5


RESNET_TINY = """
resnet-classifier-general:
  out: {out}
  data: {{dir: {data}, seed: 0, n_train: 256, n_valid: 64}}
  image_size: 48
  width: 16
  depths: [1, 1]
  train: {{epochs: 12, lr: 5.0e-3, batch_size: 32, warmup_steps: 4, scheduler: cosine, progress: false, seed: 0,
          num_workers: 0}}
"""


@pytest.fixture(scope="module")
def tiny_resnet(tmp_path_factory):
    from medcap_utils.training.standins import build_standins

    root = tmp_path_factory.mktemp("resnet-standin")
    recipe = root / "standins.yaml"
    out = root / "models" / "standins" / "resnet-classifier-general"
    recipe.write_text(RESNET_TINY.format(out=out, data=root / "general"))
    info = build_standins("resnet-classifier-general", recipe_path=recipe)["resnet-classifier-general"]
    return root, recipe, out, info


@pytest.mark.slow
def test_resnet_standin_learns_the_classes_and_loads_like_microsoft_resnet(tiny_resnet):
    """Pretraining through the project's trainer beats both image-blind floors on held-out scenes, and the folder loads
    as the recipes load ``microsoft/resnet-50``: the trunk by ``ResNetModel`` (notebook 07's loader), the classifier
    with its class names."""
    from transformers import ResNetForImageClassification, ResNetModel

    from medcap_utils.models.lstm_captioner import load_visual_encoder

    _, _, out, info = tiny_resnet
    assert info["steps"] == 12 * 8 and info["last_epoch_loss"] < 0.7 * info["first_epoch_loss"]
    floor = max(info["valid_chance_micro_f1"], info["valid_prior_micro_f1"])  # what an image-blind classifier gets
    assert info["valid_images"] == 64 and info["valid_micro_f1"] > floor + 0.1, info
    trunk = load_visual_encoder(str(out))
    full = ResNetForImageClassification.from_pretrained(out)
    assert isinstance(trunk, ResNetModel) and full.config.id2label[0] == "circle"
    import torch

    for a, b in zip(trunk.state_dict().values(), full.resnet.state_dict().values()):
        assert torch.equal(a, b)  # the trunk is the trained one, not a fresh init


@pytest.mark.slow
def test_resnet_standin_is_reused_while_its_recipe_is_unchanged(tiny_resnet, monkeypatch, capsys):
    import medcap_utils.training as training
    from medcap_utils.training.standins import build_standins

    root, recipe, out, info = tiny_resnet
    monkeypatch.setattr(training, "fit", lambda *a, **k: (_ for _ in ()).throw(AssertionError("trained again")))
    again = build_standins("resnet-classifier-general", recipe_path=recipe)["resnet-classifier-general"]
    assert again["key"] == info["key"] and "reusing it" in capsys.readouterr().out


# ---- the ViT-GPT2 stand-in: vit-gpt2-captioning-general ---------------------------------------------------------

VIT_GPT2_TINY = """
vit-gpt2-captioning-general:
  out: {out}
  data: {{dir: {data}, seed: 0, n_train: 320, n_valid: 16}}
  vocab_from: [{data}]
  image_size: 64
  patch_size: 8
  hidden_size: 64
  num_layers: 2
  num_heads: 4
  vocab_size: 300
  max_length: 32
  eval_images: 16
  decoding: {{num_beams: 1, max_new_tokens: 30, no_repeat_ngram_size: 0}}
  train: {{epochs: 12, lr: 1.0e-3, batch_size: 16, warmup_steps: 2, scheduler: cosine, progress: false, seed: 0,
          num_workers: 0}}
"""


@pytest.mark.slow
def test_vit_gpt2_standin_is_pretrained_and_used_zero_shot_as_the_hub_model(tmp_path, monkeypatch):
    """Pretrained through the project's trainer (loss falls, captions differ), loaded by the hub model's loader, and
    notebook 03's zero-shot path takes it as it is: no training, its folder in the run's meta, so the claims table
    counts it as a pretrained zero-shot model (and a randomly initialised one is refused)."""
    from transformers import VisionEncoderDecoderModel

    from medcap_utils.evaluation.claims import zero_shot_problem
    from medcap_utils.experiments import medblip_ablation as ab
    from medcap_utils.models.vit_gpt2 import load_vit_gpt2
    from medcap_utils.training.standins import build_standins

    out = tmp_path / "models" / "standins" / "vit-gpt2-captioning-general"
    recipe = tmp_path / "standins.yaml"
    recipe.write_text(VIT_GPT2_TINY.format(out=out, data=tmp_path / "general"))
    info = build_standins("vit-gpt2-captioning-general", recipe_path=recipe)["vit-gpt2-captioning-general"]
    assert info["steps"] == 12 * 20 and info["last_epoch_loss"] < 0.8 * info["first_epoch_loss"]
    # the image steers it: a quarter of the 16 held-out scenes get captions of their own (an image-blind LM writes 1)
    assert info["valid_distinct_captions"] >= 4 and 0 < info["valid_bleu4"] <= 1
    model, _, tokenizer = load_vit_gpt2(out)
    assert isinstance(model, VisionEncoderDecoderModel) and len(tokenizer) == info["vocab_size"] <= 300
    captioner, used = ab.baseline_captioner("vit_gpt2", str(out))  # notebook 03 names it repository-relative
    assert captioner is not None and used["train_time_s"] == 0.0 and used["model"] == str(out)
    assert zero_shot_problem("medblip_vit_gpt2", {"meta": used}) is None
    assert "randomly initialised" in zero_shot_problem("medblip_vit_gpt2", {"meta": {"train_time_s": 0.0}})
    with pytest.raises(FileNotFoundError, match="medcap standins"):
        ab.baseline_captioner("vit_gpt2", str(out.parent / "missing"))
