"""The one decoding interface (medcap_utils.decoding.config / .caption, issue 16): every DecodingConfig option
reaches ``generate`` under its own name and value; the fast BLIP decoder gives ``generate``'s captions for the
options it implements (the token-level proof is tests/test_fast_decode.py, reused here through ``caption``);
an option an engine does not implement is refused naming the option and the engine, never decoded by another
engine; recipe sections with unknown keys or bad values are refused; the LSTM refuses what its search lacks.

The checks over "every option" iterate over the dataclass fields, so an option added later is covered too.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from test_fast_decode import tiny_blip

from medcap_utils.decoding.caption import caption
from medcap_utils.decoding.config import ENGINE_OPTIONS, DecodingConfig, UnsupportedDecoding, option_names

DEFAULTS = DecodingConfig()


def non_default(name: str):
    """A valid value other than the default for option ``name`` (by its type)."""
    value = getattr(DEFAULTS, name)
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 2
    return value * 0.5  # a float option's valid range always holds half its default (top_p: (0, 1])


class Processor:
    """Enough of a BlipProcessor for the tiny BLIP: mean/std and a tokenizer that prints the ids."""
    image_processor = type("IP", (), {"image_mean": [0.5] * 3, "image_std": [0.25] * 3,
                                      "size": {"height": 32, "width": 32}})()
    tokenizer = type("Tok", (), {"batch_decode": staticmethod(
        lambda ids, skip_special_tokens: [" ".join(map(str, r)) for r in ids.tolist()])})()


@pytest.fixture(scope="module")
def blip():
    return tiny_blip(1)


def images(n: int = 5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


# ------------------------------------------------------------------------------------ the config itself

def test_defaults_are_generates_and_every_field_is_an_option(blip):
    from medcap_utils.decoding.blip_fast import resolve_generation_config

    hf = resolve_generation_config(blip)  # what generate resolves with no option given
    for name in option_names():
        if name != "max_new_tokens":  # the repository's cap (40); generate alone stops at max_length 20
            assert getattr(DEFAULTS, name) == (getattr(hf, name) or 0), name
    assert set(DEFAULTS.generate_kwargs()) == {f.name for f in dataclasses.fields(DecodingConfig)}
    assert DEFAULTS.changed() == {}


@pytest.mark.parametrize("bad", [dict(num_beams=0), dict(max_new_tokens=0), dict(min_new_tokens=50),
                                 dict(no_repeat_ngram_size=-1), dict(repetition_penalty=0.0),
                                 dict(length_penalty=float("nan")), dict(num_beams=2.0), dict(num_beams=True),
                                 dict(do_sample="no"), dict(top_p=0.0), dict(top_p=1.5)])
def test_bad_values_are_refused(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        DecodingConfig(**bad)


def test_unknown_mapping_keys_are_refused_naming_them():
    with pytest.raises(ValueError,
                       match=r"unknown decoding option\(s\) \['beam_size'\].*'beam_size' is now 'num_beams'"):
        DecodingConfig.from_mapping({"beam_size": 3})
    with pytest.raises(ValueError, match=r"\['top_k'\]"):
        DecodingConfig.from_mapping({"num_beams": 3, "top_k": 5})
    assert DecodingConfig.from_mapping({"num_beams": 3, "length_penalty": 1}).length_penalty == 1.0


# ------------------------------------------------------------------------------- every option to generate

@pytest.mark.parametrize("name", option_names())
def test_every_option_reaches_generate_unchanged(blip, name, monkeypatch):
    seen = []

    def spy(**kwargs):
        seen.append(kwargs)
        return torch.ones(kwargs["pixel_values"].shape[0], 3, dtype=torch.long)

    monkeypatch.setattr(blip, "generate", spy)
    config = (DecodingConfig(**{name: non_default(name)}) if name != "min_new_tokens"
              else DecodingConfig(min_new_tokens=3))
    caption(blip, images(3), config, engine="generate", processor=Processor())
    assert len(seen) == 1
    for option in option_names():  # every option, under its own name, with the value asked for
        assert seen[0][option] == getattr(config, option), option


def test_nucleus_sampling_with_a_tiny_top_p_keeps_only_the_likeliest_token(blip):
    """top_p (nucleus sampling) reaches generate and acts there: a nucleus this small holds the likeliest token
    alone, so sampling returns the greedy captions; the whole distribution (top_p=1) samples other ones."""
    greedy = caption(blip, images(6), DecodingConfig(max_new_tokens=8), engine="generate", processor=Processor())
    torch.manual_seed(0)
    nucleus = caption(blip, images(6), DecodingConfig(max_new_tokens=8, do_sample=True, top_p=1e-6),
                      engine="generate", processor=Processor())
    assert nucleus == greedy
    torch.manual_seed(0)
    sampled = caption(blip, images(6), DecodingConfig(max_new_tokens=8, do_sample=True, top_p=1.0),
                      engine="generate", processor=Processor())
    assert sampled != greedy
    with pytest.raises(UnsupportedDecoding, match=r"'fast' decoding engine does not implement .*top_p=0\.9"):
        caption(blip, images(2), DecodingConfig(do_sample=True, top_p=0.9), processor=Processor())


def test_encoder_decoder_and_msmedcap_receive_the_same_kwargs():
    from medcap_utils.models.msmedcap import MSMedCap

    config = DecodingConfig(num_beams=3, min_new_tokens=2, repetition_penalty=9.0, length_penalty=1.2)
    got = []

    class Fake(MSMedCap):  # only generate is used; the class makes caption() pick the MSMedCap family
        def __init__(self):
            torch.nn.Module.__init__(self)

        def generate(self, images_uint8, **kwargs):
            got.append((tuple(images_uint8.shape), kwargs))
            return ["c"] * len(images_uint8)

    assert caption(Fake(), images(5), config, batch_size=2) == ["c"] * 5
    assert [shape[0] for shape, _ in got] == [2, 2, 1]
    assert all(kwargs == config.generate_kwargs() for _, kwargs in got)


# ----------------------------------------------------------------------------------- engines and refusal

@pytest.mark.parametrize("options", [dict(num_beams=3, no_repeat_ngram_size=3, max_new_tokens=12),
                                     dict(num_beams=4, length_penalty=2.0, no_repeat_ngram_size=3, max_new_tokens=15),
                                     dict(num_beams=1, no_repeat_ngram_size=2, max_new_tokens=10)])
def test_fast_engine_equals_generate_for_what_it_implements(blip, options):
    config = DecodingConfig(**options)
    fast = caption(blip, images(6), config, processor=Processor(), batch_size=4)  # default engine: fast
    assert fast == caption(blip, images(6), config, engine="generate", processor=Processor(), batch_size=4)
    assert len(set(fast)) > 1


@pytest.mark.parametrize("engine", ["fast", "lstm"])
def test_an_engine_refuses_every_option_it_does_not_implement_by_name(engine):
    unsupported = [n for n in option_names() if n not in ENGINE_OPTIONS[engine]]
    assert unsupported  # both lack at least repetition_penalty
    for name in unsupported:
        config = DecodingConfig(**{name: non_default(name)})
        with pytest.raises(UnsupportedDecoding, match=rf"'{engine}' decoding engine does not implement {name}="):
            config.check_engine(engine)
    for name in ENGINE_OPTIONS[engine]:
        DecodingConfig(**{name: non_default(name)}).check_engine(engine)  # implemented: accepted


def test_blip_fast_refuses_instead_of_switching_to_generate(blip, monkeypatch):
    calls = []
    monkeypatch.setattr(blip, "generate", lambda **kw: calls.append(kw))
    with pytest.raises(UnsupportedDecoding, match=r"'fast' decoding engine does not implement repetition_penalty=9\.0"
                                                  r".*engine='generate'"):
        caption(blip, images(2), DecodingConfig(repetition_penalty=9.0), processor=Processor())
    assert calls == []  # generate was never called behind the caller's back
    with pytest.raises(ValueError, match=r"a blip model decodes with \['fast', 'generate'\], not engine='lstm'"):
        caption(blip, images(2), DecodingConfig(), engine="lstm", processor=Processor())


def test_lstm_refuses_repetition_penalty_and_decodes_what_it_implements():
    from test_lstm_captioner import V, tiny_model

    from medcap_utils.data.text_preprocessing import SPECIAL_TOKENS, Vocabulary

    model = tiny_model().eval()
    vocab = Vocabulary(list(SPECIAL_TOKENS) + [f"w{i}" for i in range(V - len(SPECIAL_TOKENS))])
    with pytest.raises(UnsupportedDecoding, match=r"'lstm' decoding engine does not implement repetition_penalty=9\.0"):
        caption(model, images(2), DecodingConfig(repetition_penalty=9.0), vocab=vocab)
    with pytest.raises(ValueError, match="not engine='generate'"):
        caption(model, images(2), DecodingConfig(), engine="generate", vocab=vocab)
    greedy = caption(model, images(3), DecodingConfig(max_new_tokens=6), vocab=vocab)
    beam1 = caption(model, images(3), DecodingConfig(num_beams=1, max_new_tokens=6), vocab=vocab)
    assert greedy == beam1 and len(greedy) == 3 and all(len(c.split()) <= 6 for c in greedy)


# ---------------------------------------------------------------------------------------------- recipes

def test_recipe_decoding_sections_are_checked_by_decoding_config(tmp_path):
    from pathlib import Path

    from medcap_utils.experiments.explainable_lstm_captioner import load_recipe as lstm_recipe
    from medcap_utils.experiments.msmedcap import load_recipe as msmedcap_recipe
    from medcap_utils.training.blip import load_blip_recipe
    from medcap_utils.training.recipe import RecipeError

    recipes = Path(__file__).resolve().parents[1] / "configs" / "recipes"

    def edited(name, old, new):
        text = (recipes / name).read_text()
        assert old in text
        (tmp_path / name).write_text(text.replace(old, new, 1))
        return tmp_path / name

    with pytest.raises(RecipeError, match=r"paper\.decoding\.beam_size: unknown key.*DecodingConfig keys"):
        lstm_recipe(edited("xai-lstm-2021.yaml", "num_beams: 3 ", "beam_size: 3 "), "rocov2")
    with pytest.raises(RecipeError, match=r"paper\.decoding\.typical_p: unknown key"):
        msmedcap_recipe(edited("msmedcap-2024.yaml", "length_penalty: 1.2", "length_penalty: 1.2\n    typical_p: 0.9"),
                        "paper")
    with pytest.raises(RecipeError, match=r"blip_base\.decoding: DecodingConfig: num_beams must be >= 1"):
        load_blip_recipe(edited("2q2t-2024.yaml", "num_beams: 1 ", "num_beams: 0 "), "blip_base", "rocov2")
    # the shipped sections build configs, with the values written
    ms = DecodingConfig.from_mapping(msmedcap_recipe(recipes / "msmedcap-2024.yaml", "paper")["decoding"])
    assert (ms.num_beams, ms.min_new_tokens, ms.repetition_penalty, ms.length_penalty) == (15, 10, 9.0, 1.2)
    lstm = DecodingConfig.from_mapping(lstm_recipe(recipes / "xai-lstm-2021.yaml", "demo")["decoding"])
    assert (lstm.num_beams, lstm.max_new_tokens) == (1, 28)
