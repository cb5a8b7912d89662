"""BLIP (medcap_utils.models.blip / blip_training): tokens and targets as the original BLIP trains them,
the loss that transformers computes from them, save/load by path, freezing, and real learning on the demo data."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medcap_utils.decoding.caption import caption
from medcap_utils.decoding.config import DecodingConfig
from medcap_utils.models.blip import (
    blip_tokenizer,
    build_demo_blip,
    caption_targets,
    freeze,
    load_blip,
    make_blip_loss,
    set_label_smoothing,
)

CAPTIONS = ["Axial CT of the chest shows a nodule (white arrow).", "Knee radiograph.",
            "Brain MRI, sagittal T2-weighted image without abnormality.", "Abdominal ultrasound."]


@pytest.fixture(scope="module")
def tiny_blip(tmp_path_factory):
    path = build_demo_blip(tmp_path_factory.mktemp("blip") / "m", CAPTIONS * 5, vocab_size=200, image_size=32,
                           vision_hidden=32, vision_layers=1, text_hidden=32, text_layers=1, heads=2)
    return load_blip(path)


@pytest.fixture(scope="module")
def demo_root_480_200(tmp_path_factory) -> Path:
    """Demo data (seed 0) with 480 training and 200 test images, for the learning test below. With the
    session fixture's 240/40 the modality rate was too close to its 0.15 margin: 0.41 on the CI machine
    (whose floats part from this machine's in the first epoch), 0.51-0.60 here over 4 training seeds on
    200 test images (a rate on 40 images also has a standard error of about 0.08). With 480 training
    images it was 0.67 for the weakest of those seeds and 0.68 for the recipe's; the most frequent caption: 0.31."""
    from medcap_utils.data.synth import synthesize

    root = tmp_path_factory.mktemp("demo480")
    synthesize(root, seed=0, n_train=480, n_valid=40, n_test=200)
    return root


def _batch(model, processor, captions, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (len(captions), 32, 32, 3), generator=g, dtype=torch.uint8)
    return {"images": images, **caption_targets(processor.tokenizer, captions, model.config.text_config.bos_token_id)}


def test_bert_vocabulary_tokenizer_has_salesforce_special_token_ids():
    tok = blip_tokenizer("bert-uncased")
    assert len(tok) == 30524  # Salesforce BLIP text_config.vocab_size
    assert (tok.bos_token, tok.bos_token_id) == ("[DEC]", 30522)
    assert tok.convert_tokens_to_ids("[ENC]") == 30523
    assert (tok.pad_token_id, tok.sep_token_id, tok.cls_token_id) == (0, 102, 101)


def test_targets_start_with_dec_mask_padding_and_pad_to_longest():
    tok = blip_tokenizer("bert-uncased")
    t = caption_targets(tok, CAPTIONS, tok.bos_token_id, max_length=200)
    lengths = t["attention_mask"].sum(1)
    assert t["input_ids"].shape[1] == int(lengths.max())  # padded to the batch's longest, not to 200
    assert (t["input_ids"][:, 0] == 30522).all()  # [DEC], not [CLS]
    assert (t["labels"][:, 0] == -100).all()
    for row, n in enumerate(lengths.tolist()):
        assert t["input_ids"][row, n - 1] == tok.sep_token_id  # ends with [SEP], generation's end token
        assert (t["labels"][row, n:] == -100).all() and (t["labels"][row, 1:n] == t["input_ids"][row, 1:n]).all()
    short = caption_targets(tok, [CAPTIONS[2]], tok.bos_token_id, max_length=6)
    assert short["input_ids"].shape[1] == 6 and short["input_ids"][0, -1] == tok.sep_token_id


def test_prompt_tokens_are_not_learned():
    tok = blip_tokenizer("bert-uncased")
    t = caption_targets(tok, ["a knee radiograph."], tok.bos_token_id, prompt="a picture of")
    assert (t["labels"][0, :4] == -100).all() and t["labels"][0, 4] == t["input_ids"][0, 4]


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_loss_is_masked_cross_entropy_with_label_smoothing(tiny_blip, smoothing):
    model, processor = tiny_blip
    set_label_smoothing(model, smoothing)
    batch = _batch(model, processor, CAPTIONS)
    model.eval()
    loss = make_blip_loss(processor)(model, batch)
    from medcap_utils.models.blip import pixel_values

    logits = model(pixel_values=pixel_values(batch["images"], processor), input_ids=batch["input_ids"],
                   attention_mask=batch["attention_mask"]).logits
    manual = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), batch["labels"][:, 1:].reshape(-1),
                             ignore_index=-100, label_smoothing=smoothing)
    torch.testing.assert_close(loss, manual)
    # what the seeds' code did: pad tokens left in the labels -> a different (wrong) loss
    unmasked = model(pixel_values=pixel_values(batch["images"], processor), input_ids=batch["input_ids"],
                     attention_mask=batch["attention_mask"], labels=batch["input_ids"]).loss
    assert not torch.isclose(unmasked, loss)


def test_initial_loss_is_near_log_vocabulary(tiny_blip):
    model, processor = tiny_blip
    set_label_smoothing(model, 0.0)
    loss = make_blip_loss(processor)(model, _batch(model, processor, CAPTIONS)).item()
    assert abs(loss - math.log(len(processor.tokenizer))) < 0.15 * math.log(len(processor.tokenizer))


def test_save_and_load_by_path_round_trips(tiny_blip, tmp_path):
    model, processor = tiny_blip
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    again, proc2 = load_blip(tmp_path)
    assert proc2.tokenizer.bos_token == "[DEC]" and len(proc2.tokenizer) == len(processor.tokenizer)
    assert proc2.image_processor.size == processor.image_processor.size
    for (k, a), b in zip(model.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), k


def test_freeze_switches_select_the_trainable_part(tiny_blip):
    model, _ = tiny_blip
    trainable = {id(p) for p in freeze(model, vision_encoder=True)}
    assert all(id(p) not in trainable for p in model.vision_model.parameters())
    assert all(id(p) in trainable for p in model.text_decoder.parameters())
    trainable = {id(p) for p in freeze(model, text_decoder=True)}
    assert all(id(p) in trainable for p in model.vision_model.parameters())
    assert all(id(p) not in trainable for p in model.text_decoder.parameters())
    freeze(model)
    assert all(p.requires_grad for p in model.parameters())


def test_generated_captions_are_plain_text(tiny_blip):
    model, processor = tiny_blip
    images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    caps = caption(model, images, DecodingConfig(max_new_tokens=5), batch_size=2, processor=processor)
    assert len(caps) == 3 and all(isinstance(c, str) and "[DEC]" not in c and "[SEP]" not in c for c in caps)


@pytest.mark.slow
def test_demo_blip_learns_beyond_untrained_and_most_frequent_caption(demo_root_480_200, tmp_path):
    """Item 9 of the BLIP issue: the fine-tuned demo BLIP beats an untrained one and the most frequent
    training caption on the test split, clearly, in BLEU-4 and in naming the right modality."""
    from medcap_utils.evaluation.baselines import most_frequent_caption
    from medcap_utils.metrics.coco import coco_scores
    from medcap_utils.metrics.modality import modality_mention_rate
    from medcap_utils.models.blip import load_blip
    from medcap_utils.training.blip import load_blip_recipe, start_model, train_blip_recipe
    from medcap_utils.training.captioning_data import caption_dataset

    recipe = load_blip_recipe("configs/recipes/2q2t-2024.yaml", "blip_base", "demo", epochs=40, log_every=50)
    recipe["eval_images"] = 0  # speed: validation loss only
    untrained, processor = load_blip(start_model(recipe, demo_root_480_200, tmp_path))
    model, processor, result = train_blip_recipe(recipe, demo_root_480_200, tmp_path)
    test = caption_dataset(demo_root_480_200, "test", recipe["image_size"])
    refs = dict(zip(test.ids, test.captions))
    train_caps = caption_dataset(demo_root_480_200, "train", recipe["image_size"]).captions

    def score(captions):
        return (coco_scores(refs, dict(zip(test.ids, captions)), metrics=["Bleu_4"])["Bleu_4"],
                modality_mention_rate(captions, test.modalities))

    learned = score(caption(model, test.images(), recipe["decoding"], processor=processor))
    random_init = score(caption(untrained, test.images(), recipe["decoding"], processor=processor))
    frequent = score([most_frequent_caption(train_caps)] * len(test))
    assert result.history["val_loss"].iloc[-1] < 0.6 * result.history["val_loss"].iloc[0] or \
        result.history["train_loss"].iloc[-1] < 0.5 * result.history["train_loss"].iloc[0]
    for baseline in (random_init, frequent):
        assert learned[0] > max(2 * baseline[0], baseline[0] + 0.03), (learned, random_init, frequent)  # BLEU-4
        assert learned[1] > baseline[1] + 0.15, (learned, random_init, frequent)  # modality mention rate
