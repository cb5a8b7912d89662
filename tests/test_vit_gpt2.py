"""ViT-GPT2 baseline: built from configs, saved and loaded by path like the hub checkpoint; targets,
padding and the image path are checked on a tiny random model."""
import numpy as np
import pytest
import torch

from medcap_utils.data.cache import normalize_uint8
from medcap_utils.decoding.captioners import encoder_decoder_captioner
from medcap_utils.decoding.config import DecodingConfig
from medcap_utils.models.causal_tokenizer import train_causal_tokenizer
from medcap_utils.models.vit_gpt2 import build_demo_vit_gpt2, load_vit_gpt2, vit_gpt2_labels, vit_gpt2_loss

CAPTIONS = [
    "Axial CT of the chest shows a mass in the right lung (arrow).",
    "Sagittal MRI of the lumbar spine.",
    "Ultrasound of the liver with a hypoechoic lesion.",
    "Chest X-ray shows bilateral effusions.",
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("vitgpt2")
    build_demo_vit_gpt2(out, train_causal_tokenizer(CAPTIONS * 5, 200), image_size=32, patch_size=8,
                        hidden_size=32)
    return load_vit_gpt2(out)


def pixels(image_processor, n=4, seed=0):
    rng = np.random.default_rng(seed)
    images = torch.from_numpy(rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8))
    return normalize_uint8(images, image_processor.image_mean, image_processor.image_std)


def test_loaded_by_path_with_generation_ids(tiny):
    model, image_processor, tokenizer = tiny
    assert model.config.decoder_start_token_id == tokenizer.bos_token_id
    assert model.config.pad_token_id == tokenizer.pad_token_id
    assert model.decoder.config.vocab_size == len(tokenizer)
    assert image_processor.size["height"] == 32


def test_labels_end_token_no_start_token_padding_ignored(tiny):
    _, _, tokenizer = tiny
    labels = vit_gpt2_labels(tokenizer, [CAPTIONS[0], "CT."])
    assert tokenizer.bos_token_id not in labels.tolist()[0]
    for row in labels:
        kept = row[row != -100].tolist()
        assert kept[-1] == tokenizer.eos_token_id
        assert (row[len(kept):] == -100).all()  # padding only after the caption
    assert (labels[1] == -100).sum() > 0
    assert vit_gpt2_labels(tokenizer, [CAPTIONS[0]], max_length=5).shape[1] == 5


def test_extra_padding_does_not_change_the_loss(tiny):
    model, image_processor, tokenizer = tiny
    model.eval()
    px = pixels(image_processor, 1)
    labels = vit_gpt2_labels(tokenizer, [CAPTIONS[1]])
    padded = torch.cat([labels, torch.full((1, 7), -100)], dim=1)
    with torch.no_grad():
        a = vit_gpt2_loss(model, {"pixel_values": px, "labels": labels})
        b = vit_gpt2_loss(model, {"pixel_values": px, "labels": padded})
    assert torch.allclose(a, b, atol=1e-6)


def test_image_changes_the_logits(tiny):
    model, image_processor, tokenizer = tiny
    model.eval()
    labels = vit_gpt2_labels(tokenizer, [CAPTIONS[0]] * 2)
    with torch.no_grad():
        logits = model(pixel_values=pixels(image_processor, 2), labels=labels).logits
    assert (logits[0] - logits[1]).abs().max() > 1e-4


def test_a_few_steps_fit_four_captions(tiny):
    model, image_processor, tokenizer = tiny
    model.train()
    torch.manual_seed(0)
    batch = {"pixel_values": pixels(image_processor, 4), "labels": vit_gpt2_labels(tokenizer, CAPTIONS)}
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        loss = vit_gpt2_loss(model, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]
    # after fitting, greedy decoding reproduces a training caption's first words for its image
    model.eval()
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    captions = encoder_decoder_captioner(model, image_processor, tokenizer).caption(
        images, DecodingConfig(num_beams=1, max_new_tokens=20))
    assert sum(c.split()[:2] == t.lower().split()[:2] for c, t in zip(captions, CAPTIONS)) >= 3
