"""One captioning call for every model of the repository: :func:`caption`.

``caption(model, images, config)`` turns uint8 images ``(N, H, W, 3)`` into one caption each, decoded as
:class:`~medcap_utils.decoding.config.DecodingConfig` says, by the engine that model family has:

======================  ==================  ==========================================================
family                  engines             used by
======================  ==================  ==========================================================
BLIP                    ``fast`` (default),  notebooks 02-04, training's validation captions, the
                        ``generate``         caption command (:mod:`medcap_utils.runner.caption`)
BLIP-2 / InstructBLIP   ``generate``         notebook 03's comparison models
ViT-GPT2                ``generate``         notebook 03's comparison models
MSMedCap                ``generate``         notebook 06
attention LSTM          ``lstm``             notebook 07 (:mod:`medcap_utils.decoding.lstm`)
======================  ==================  ==========================================================

An option the chosen engine does not implement raises
:class:`~medcap_utils.decoding.config.UnsupportedDecoding` naming the option and the engine; no call changes
engine on its own (ask for ``engine="generate"``).
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from medcap_utils.decoding.config import DecodingConfig, as_config

#: The engines each family can decode with; the first is the default.
ENGINES = {"blip": ("fast", "generate"), "blip2": ("generate",), "encoder_decoder": ("generate",),
           "msmedcap": ("generate",), "lstm": ("lstm",)}


def captioner_kind(model) -> str:
    """The family of ``model``: ``blip``, ``blip2`` (BLIP-2 and InstructBLIP), ``encoder_decoder`` (ViT-GPT2 and
    any ``VisionEncoderDecoderModel``), ``msmedcap`` or ``lstm``."""
    from transformers import BlipForConditionalGeneration, VisionEncoderDecoderModel

    from medcap_utils.models.lstm_captioner import LSTMCaptioner
    from medcap_utils.models.msmedcap import MSMedCap

    if isinstance(model, LSTMCaptioner):
        return "lstm"
    if isinstance(model, MSMedCap):
        return "msmedcap"
    if isinstance(model, BlipForConditionalGeneration):
        return "blip"
    if isinstance(model, VisionEncoderDecoderModel):
        return "encoder_decoder"
    if getattr(getattr(model, "config", None), "model_type", None) in ("blip-2", "instructblip"):
        return "blip2"
    raise TypeError(f"no captioning engine for {type(model).__name__}; families: {sorted(ENGINES)}")


def resolve_engine(kind: str, engine: str | None) -> str:
    """``engine`` checked against the family's engines (None: the family's default)."""
    engines = ENGINES[kind]
    if engine is None:
        return engines[0]
    if engine not in engines:
        raise ValueError(f"a {kind} model decodes with {list(engines)}, not engine={engine!r}")
    return engine


def caption(model, images, config: DecodingConfig | Mapping[str, Any] | None = None, *, engine: str | None = None,
            batch_size: int = 64, processor=None, tokenizer=None, vocab=None, device=None) -> list[str]:
    """One caption per uint8 image of ``images`` (numpy or torch, ``(N, H, W, 3)``), in batches of ``batch_size``.

    ``config``: a :class:`DecodingConfig` or a recipe's ``decoding:`` mapping (None: every default).
    ``engine``: None for the family's default (BLIP: ``"fast"``); ``"generate"`` forces Hugging Face ``generate``.
    What the family needs besides the model: ``processor`` (BLIP, BLIP-2; ViT-GPT2: its image processor),
    ``tokenizer`` (ViT-GPT2), ``vocab`` (the LSTM). ``device``: BLIP only, default the model's.
    """
    config = as_config(config)
    kind = captioner_kind(model)
    engine = resolve_engine(kind, engine)
    config.check_engine(engine)
    if kind == "blip":
        from medcap_utils.decoding.blip import blip_captions

        return blip_captions(model, _needs(processor, "processor", kind), images, config, engine=engine,
                             batch_size=batch_size, device=device)
    if kind == "lstm":
        from medcap_utils.decoding.lstm import lstm_captions

        return lstm_captions(model, _needs(vocab, "vocab", kind), images, config, batch_size=batch_size)
    one_batch = {"blip2": lambda b: _blip2(model, _needs(processor, "processor", kind), b, config),
                 "encoder_decoder": lambda b: _encoder_decoder(model, _needs(processor, "processor", kind),
                                                               _needs(tokenizer, "tokenizer", kind), b, config),
                 "msmedcap": lambda b: model.generate(torch.as_tensor(np.ascontiguousarray(b)),
                                                      **config.generate_kwargs())}[kind]
    out: list[str] = []
    for start in range(0, len(images), batch_size):
        out += one_batch(images[start:start + batch_size])
    return out


def _needs(value, name: str, kind: str):
    if value is None:
        raise TypeError(f"captioning a {kind} model needs {name}=")
    return value


def _blip2(model, processor, images, config: DecodingConfig) -> list[str]:
    """BLIP-2 / InstructBLIP: inputs go through the processor so the ``<image>`` placeholders are there."""
    from medcap_utils.models.blip2 import blip2_generate

    return blip2_generate(model, processor, list(images), **config.generate_kwargs())


@torch.no_grad()
def _encoder_decoder(model, image_processor, tokenizer, images, config: DecodingConfig) -> list[str]:
    """ViT-GPT2: images normalised on the model's device from the uint8 cache (resized once when the cache was
    built), so generation time is not spent in a PIL loop."""
    from medcap_utils.data.cache import normalize_uint8

    device = next(model.parameters()).device
    images = images if torch.is_tensor(images) else torch.from_numpy(np.ascontiguousarray(images))
    pixels = normalize_uint8(images.to(device), image_processor.image_mean, image_processor.image_std)
    out = model.generate(pixel_values=pixels, **config.generate_kwargs())
    return [t.strip() for t in tokenizer.batch_decode(out, skip_special_tokens=True)]
