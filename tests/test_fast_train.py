"""The fast BLIP training path (SDPA attention, chunked cross-entropy, length-grouped batches) computes
the same loss and gradients as the plain Hugging Face forward, and its loss curve follows the plain one."""
import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medcap_utils.models.blip import caption_targets, demo_blip_config, make_blip_loss
from medcap_utils.models.blip_fast import (
    LengthGroupedSampler,
    disable_sdpa,
    enable_sdpa,
    linear_cross_entropy,
    make_fast_blip_loss,
    sdpa_attention,
)

CAPTIONS = ["axial ct of the chest shows a large mass in the right upper lobe", "sagittal mri of the spine",
            "ultrasound of the liver", "chest x-ray shows an effusion on the left with a tube in place",
            "angiography", "pet ct shows uptake in the mediastinum"]


@pytest.fixture(scope="module")
def tiny():
    from transformers import BlipForConditionalGeneration

    from medcap_utils.models.blip import blip_tokenizer

    tok = blip_tokenizer("wordpiece", CAPTIONS * 5, vocab_size=120)
    config = demo_blip_config(len(tok), tok.bos_token_id, tok.pad_token_id, tok.sep_token_id, image_size=32,
                              patch_size=8, vision_hidden=32, vision_layers=2, text_hidden=32, text_layers=2, heads=4)
    torch.manual_seed(0)
    model = BlipForConditionalGeneration(config)

    class Processor:  # what make_blip_loss reads: the image mean/std and the tokenizer
        tokenizer = tok
        image_processor = type("IP", (), {"image_mean": [0.48, 0.46, 0.41], "image_std": [0.27, 0.26, 0.28]})()

    return model, Processor()


def batch_of(processor, model, captions, seed=0):
    images = torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (len(captions), 32, 32, 3), dtype=np.uint8))
    batch = caption_targets(processor.tokenizer, captions, model.config.text_config.bos_token_id, max_length=40)
    return {**batch, "images": images}


def grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_one_step_loss_and_gradients_equal(tiny):
    model, processor = tiny
    batch = batch_of(processor, model, CAPTIONS)
    assert (batch["labels"] == -100).sum() > len(CAPTIONS)  # padding really is there
    plain, fast = copy.deepcopy(model).train(), copy.deepcopy(model).train()
    loss_plain = make_blip_loss(processor)(plain, batch)
    loss_plain.backward()
    with sdpa_attention(fast):
        loss_fast = make_fast_blip_loss(processor, chunk_rows=7)(fast, batch)
        loss_fast.backward()
    torch.testing.assert_close(loss_fast, loss_plain, rtol=1e-5, atol=1e-6)
    want, got = grads(plain), grads(fast)
    assert want.keys() == got.keys() and len(want) > 20
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("chunk", [3, 64, 4096])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_chunked_cross_entropy_equals_plain(chunk, smoothing):
    g = torch.Generator().manual_seed(chunk)
    hidden = torch.randn(2, 9, 16, generator=g, requires_grad=True)
    weight = torch.randn(50, 16, generator=g, requires_grad=True)
    bias = torch.randn(50, generator=g, requires_grad=True)
    labels = torch.randint(0, 50, (2, 9), generator=g)
    labels[0, 5:] = -100
    labels[1, 0] = -100
    want = F.cross_entropy(F.linear(hidden, weight, bias).view(-1, 50), labels.view(-1), label_smoothing=smoothing)
    want_grads = torch.autograd.grad(want * 3.0, (hidden, weight, bias))
    got = linear_cross_entropy(hidden, weight, bias, labels, smoothing, chunk_rows=chunk)
    got_grads = torch.autograd.grad(got * 3.0, (hidden, weight, bias))
    torch.testing.assert_close(got, want)
    for a, b in zip(got_grads, want_grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_sdpa_model_equals_eager_and_is_reversible(tiny):
    model, processor = tiny
    model = copy.deepcopy(model).eval()
    batch = batch_of(processor, model, CAPTIONS[:4], seed=1)
    from medcap_utils.models.blip import pixel_values

    pv = pixel_values(batch["images"], processor)
    inputs = dict(pixel_values=pv, input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    with torch.no_grad():
        eager = model(**inputs).logits
        eager_gen = model.generate(pixel_values=pv, num_beams=3, max_new_tokens=8)
        enable_sdpa(model)
        sdpa = model(**inputs).logits
        sdpa_gen = model.generate(pixel_values=pv, num_beams=3, max_new_tokens=8)
        disable_sdpa(model)
        again = model(**inputs, output_attentions=True)
    real = batch["attention_mask"].bool()  # padded positions differ only where nothing is learned
    torch.testing.assert_close(sdpa[real], eager[real], rtol=1e-5, atol=1e-5)
    assert torch.equal(sdpa_gen, eager_gen)
    assert again.attentions[0] is not None and torch.equal(again.logits, eager)


def test_loss_curves_agree(tiny):
    """20 AdamW steps on a fixed seed: the fast path's losses follow the plain path's."""
    model, processor = tiny
    curves = {}
    for name in ("plain", "fast"):
        torch.manual_seed(0)
        m = copy.deepcopy(model).train()
        opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
        loss_fn = make_fast_blip_loss(processor) if name == "fast" else make_blip_loss(processor)
        if name == "fast":
            enable_sdpa(m)
        losses = []
        for step in range(20):
            idx = [(step + k) % len(CAPTIONS) for k in range(4)]
            loss = loss_fn(m, batch_of(processor, m, [CAPTIONS[i] for i in idx], seed=step))
            loss.backward()
            opt.step()
            opt.zero_grad()
            losses.append(loss.item())
        curves[name] = np.array(losses)
    assert curves["plain"][-1] < curves["plain"][0] - 0.5  # it learns, so the comparison means something
    np.testing.assert_allclose(curves["fast"], curves["plain"], rtol=1e-3)


def test_length_grouped_sampler():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 120, 1000)
    sampler = LengthGroupedSampler(lengths, batch_size=32, seed=3, pool_batches=8)
    first = list(sampler)
    assert sorted(first) == list(range(1000)) and first == list(sampler)  # each index once; deterministic
    sampler.set_epoch(1)
    assert list(sampler) != first

    def padding(order):
        batches = [lengths[order[i:i + 32]] for i in range(0, len(order), 32)]
        return sum(b.max() * len(b) - b.sum() for b in batches)

    random_order = rng.permutation(1000)
    assert padding(first) < 0.2 * padding(random_order)


def test_finetune_blip_fast_follows_plain(tiny, tmp_path):
    """Through the shared loop (notebook 02's call): same per-epoch losses, eager attention given back."""
    from medcap_utils.data.cache import ImageCache
    from medcap_utils.training import TrainConfig
    from medcap_utils.training.blip import finetune_blip
    from medcap_utils.training.captioning_data import CaptionImageCacheDataset

    model, processor = tiny
    images = np.random.default_rng(5).integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    ids = [f"img{i}" for i in range(12)]
    data = CaptionImageCacheDataset(ImageCache(tmp_path, ids, images), ids, [CAPTIONS[i % 6] for i in range(12)])
    cfg = TrainConfig(epochs=2, lr=3e-3, batch_size=4, progress=False, seed=1)
    history = {}
    for fast in (False, True):
        m = copy.deepcopy(model)
        result = finetune_blip(m, processor, data, cfg, fast=fast, length_grouped=False)  # same batches
        history[fast] = result.history["train_loss"].to_numpy()
        assert all("forward" not in mod.__dict__ for mod in m.modules())
    np.testing.assert_allclose(history[True], history[False], rtol=1e-3)


def test_pixels_indexed_from_a_device_cache_give_the_same_loss(tiny, tmp_path):
    """Batches carrying cache rows instead of pixels (the GPU path of finetune_blip) give the same loss."""
    from medcap_utils.data.cache import ImageCache
    from medcap_utils.models.blip_fast import images_to_device
    from medcap_utils.training.captioning_data import CaptionImageCacheDataset, make_caption_collate

    model, processor = tiny
    images = np.random.default_rng(3).integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
    ids = [f"img{i}" for i in range(10)]
    data = CaptionImageCacheDataset(ImageCache(tmp_path, ids, images), ids[::-1], [CAPTIONS[i % 6] for i in range(10)])
    collate = make_caption_collate(processor.tokenizer, model.config.text_config.bos_token_id, 40)
    with_pixels = collate([data[i] for i in (1, 4, 7)])
    rows_only = collate([data.without_images()[i] for i in (1, 4, 7)])
    assert "images" not in rows_only and torch.equal(rows_only["rows"], torch.tensor([8, 5, 2]))
    assert images_to_device(data.cache, "cpu") is None  # only a GPU holds the cache
    loss = make_fast_blip_loss(processor)
    from_cache = make_fast_blip_loss(processor, device_images=torch.from_numpy(images))
    with torch.no_grad():
        assert torch.equal(loss(model, with_pixels), from_cache(model, rows_only))
        assert not torch.equal(loss(model, with_pixels),
                               from_cache(model, {**rows_only, "rows": rows_only["rows"] + 1}))
