"""The fast BLIP decoder returns exactly the tokens of ``model.generate`` (float32, CPU, tiny random BLIPs).

Models are biased towards a few tokens so that unconstrained decoding repeats itself (the n-gram ban
has work to do) and towards the end token by a random amount per seed (hypotheses finish at different
steps, so beam finalisation, the early-stopping heuristic and padding are exercised).
"""
import pytest
import torch

from medcap_utils.decoding.blip_fast import UnsupportedGeneration, ban_repeated_ngrams, fast_generate
from medcap_utils.decoding.captioners import repeated_ngrams
from medcap_utils.models.blip import demo_blip_config

VOCAB, BOS, PAD, SEP = 40, 1, 0, 2
EOS_BIAS = (1.0, 2.0, 1.5, 1.2)  # per seed: captions end at different steps, or run to the limit


def tiny_blip(seed: int, eos_bias: float | None = None):
    """A tiny BLIP with weights large enough (std 0.15) that captions depend on the image and repeat."""
    from transformers import BlipForConditionalGeneration

    config = demo_blip_config(VOCAB, BOS, PAD, SEP, image_size=32, patch_size=16, vision_hidden=32, vision_layers=1,
                              text_hidden=32, text_layers=2, heads=2, max_positions=64)
    torch.manual_seed(seed)
    model = BlipForConditionalGeneration(config).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=g) * 0.15)
        bias = model.text_decoder.cls.predictions.decoder.bias
        bias.copy_(torch.randn(VOCAB, generator=g) * 0.5)
        bias[SEP] = EOS_BIAS[seed % 4] if eos_bias is None else eos_bias
    return model


def pixels(n: int, seed: int):
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(100 + seed))


@pytest.fixture(scope="module")
def models():
    return {seed: tiny_blip(seed) for seed in range(4)}


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("num_beams", [1, 3, 4, 5, 10])
def test_identical_to_generate(models, seed, num_beams):
    model = models[seed]
    batch, new = [(1, 12), (3, 20), (5, 9), (7, 30)][seed]
    px = pixels(batch, seed)
    kwargs = dict(num_beams=num_beams, no_repeat_ngram_size=3, max_new_tokens=new, do_sample=False)
    want = model.generate(pixel_values=px, **kwargs)
    got = fast_generate(model, px, **kwargs)
    assert got.shape == want.shape
    assert torch.equal(got, want)


@pytest.mark.parametrize("options", [
    dict(num_beams=4, length_penalty=0.0), dict(num_beams=3, length_penalty=2.0, early_stopping=True),
    dict(num_beams=5, early_stopping="never"), dict(num_beams=5, early_stopping="never", length_penalty=-0.5),
    dict(num_beams=3, no_repeat_ngram_size=2), dict(num_beams=1, no_repeat_ngram_size=0),
    dict(num_beams=3, no_repeat_ngram_size=0, max_length=15),
])
def test_options_identical(models, options):
    for seed in (1, 2):
        px = pixels(6, seed)
        kwargs = {"max_new_tokens": 16, **options} if "max_length" not in options else options
        assert torch.equal(fast_generate(models[seed], px, **kwargs), models[seed].generate(pixel_values=px, **kwargs))


def test_ngram_ban_matters(models):
    """Without the ban the biased models repeat trigrams; with it neither decoder does."""
    px = pixels(7, 3)
    free = models[3].generate(pixel_values=px, num_beams=3, max_new_tokens=30)
    assert any(repeated_ngrams(row.tolist(), 3) for row in free)
    banned = fast_generate(models[3], px, num_beams=3, max_new_tokens=30, no_repeat_ngram_size=3)
    assert not any(repeated_ngrams([t for t in row.tolist() if t != SEP], 3) for row in banned)


def test_ban_matches_rule():
    prev = torch.tensor([[5, 6, 7, 5, 6], [1, 2, 3, 4, 5]])
    scores = ban_repeated_ngrams(prev, torch.zeros(2, 10), 3)
    assert torch.isinf(scores[0, 7]) and torch.isinf(scores[0]).sum() == 1  # "5 6" was followed by 7
    assert not torch.isinf(scores[1]).any()


def test_unsupported_options_are_refused(models):
    with pytest.raises(UnsupportedGeneration):
        fast_generate(models[0], pixels(1, 0), do_sample=True)
    with pytest.raises(UnsupportedGeneration):
        fast_generate(models[0], pixels(1, 0), repetition_penalty=1.3)


def test_cases_exercise_the_search(models):
    """The identity tests mean something: captions differ by image and end at different steps."""
    out = models[1].generate(pixel_values=pixels(7, 1), num_beams=3, no_repeat_ngram_size=3, max_new_tokens=20)
    ends = {int((row == SEP).nonzero()[0]) if (row == SEP).any() else -1 for row in out}
    assert len({tuple(r) for r in out.tolist()}) > 3 and len(ends) > 2


@pytest.mark.parametrize("num_beams", [1, 4])
def test_fixed_shape_step_identical(models, num_beams):
    """The step a GPU session compiles (whole key buffer with a mask, position as a tensor) gives the same tokens."""
    for seed in (0, 3):
        px = pixels(5, seed)
        kwargs = dict(num_beams=num_beams, no_repeat_ngram_size=3, max_new_tokens=15)
        assert torch.equal(fast_generate(models[seed], px, static=True, **kwargs),
                           models[seed].generate(pixel_values=px, **kwargs))


@pytest.mark.parametrize("num_beams", [1, 3, 5])
def test_steps_past_the_stop_change_nothing(models, num_beams):
    """Graph replay reads the stop flag every few steps: extra steps after HF would stop leave the output as is."""
    for seed in range(4):
        px = pixels(6, seed)
        kwargs = dict(num_beams=num_beams, no_repeat_ngram_size=3, max_new_tokens=25)
        ref = models[seed].generate(pixel_values=px, **kwargs)
        assert torch.equal(fast_generate(models[seed], px, check_every=1000, **kwargs), ref)


def test_caption_engines_agree(models):
    """``caption`` (notebooks 02-04, decoding grid) gives the same captions with either BLIP engine."""
    import numpy as np

    from medcap_utils.decoding.caption import caption
    from medcap_utils.decoding.config import DecodingConfig

    class Processor:
        image_processor = type("IP", (), {"image_mean": [0.5] * 3, "image_std": [0.25] * 3})()
        tokenizer = type("Tok", (), {"batch_decode": staticmethod(
            lambda ids, skip_special_tokens: [" ".join(map(str, r)) for r in ids.tolist()])})()

    images = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    for beams in (1, 3):
        config = DecodingConfig(num_beams=beams, max_new_tokens=12, no_repeat_ngram_size=3)
        fast = caption(models[1], images, config, engine="fast", batch_size=4, processor=Processor())
        assert fast == caption(models[1], images, config, engine="generate", batch_size=4, processor=Processor())
        assert len(set(fast)) > 1


def test_cross_attention_keys_are_stored_contiguous(models):
    """Per-image keys/values are stored so the per-step matmuls read them in place (a strided view made
    torch.matmul copy every layer's keys and values at every step: 7.4 GB per step at beam 3, batch 512)."""
    from medcap_utils.decoding.blip_fast import BlipStepper

    model = models[0]
    embeds = model.vision_model(pixel_values=pixels(3, 0)).last_hidden_state
    stepper = BlipStepper(model, embeds, beams=3, max_length=10)
    assert all(k.is_contiguous() and v.is_contiguous() for k, v in zip(stepper.cross_k, stepper.cross_v))
    before = stepper.cross_k[0].data_ptr()
    stepper.load_images(model.vision_model(pixel_values=pixels(3, 1)).last_hidden_state)
    assert stepper.cross_k[0].data_ptr() == before  # a new batch is copied into the same tensors


@pytest.mark.parametrize("num_beams", [3, 5])
def test_reused_decoder_state_gives_the_same_tokens(models, num_beams):
    """A GPU session keeps stepper and search between batches (CUDA graphs replay them): after ``reset`` a
    second batch through the same state must decode as a fresh one, beam histories (the slot table) included."""
    from medcap_utils.decoding.blip_fast import BeamSearch, BlipStepper, resolve_generation_config, run_search

    model, n, max_length = models[2], 4, 14
    kwargs = dict(num_beams=num_beams, no_repeat_ngram_size=3, max_length=max_length)
    gen = resolve_generation_config(model, **kwargs)
    tc = model.config.text_config
    embeds = [model.vision_model(pixel_values=pixels(n, s)).last_hidden_state for s in (0, 1)]
    stepper = BlipStepper(model, embeds[0], num_beams, max_length)
    search = BeamSearch(stepper, n, num_beams, max_length, tc.sep_token_id, tc.pad_token_id, 3, gen.length_penalty,
                        gen.early_stopping, embeds[0].device)
    prompt = torch.full((n, 1), tc.bos_token_id)
    with torch.no_grad():
        for s in (0, 1, 0):
            stepper.load_images(embeds[s])
            search.reset(prompt)
            got = run_search(search, 1, max_length)
            assert torch.equal(got, model.generate(pixel_values=pixels(n, s), **kwargs)), s
