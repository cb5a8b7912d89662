"""BLIP's captioning engine: uint8 images in batches through the fast decoder (:mod:`medcap_utils.decoding.blip_fast`,
``engine="fast"``) or Hugging Face ``generate`` (``engine="generate"``). Reached through
:func:`medcap_utils.decoding.caption.caption` (notebooks 02-04, training's validation captions, the caption command).
"""
from __future__ import annotations

import numpy as np
import torch
from transformers import BlipForConditionalGeneration

from medcap_utils.decoding.blip_fast import fast_generate
from medcap_utils.decoding.config import DecodingConfig, UnsupportedDecoding
from medcap_utils.models.blip import _needs_interpolation, pixel_values


@torch.no_grad()
def blip_captions(model, processor, images_uint8, config: DecodingConfig, engine: str = "fast",
                  batch_size: int = 64, device=None) -> list[str]:
    """Captions for uint8 images ``(N, H, W, 3)`` (numpy or torch), in batches of ``batch_size``.

    ``engine="fast"`` decodes with :func:`medcap_utils.decoding.blip_fast.fast_generate` (the same tokens as
    ``model.generate``, proven by tests/test_fast_decode.py) and refuses, naming them, the options it does not
    implement and models whose ``generate`` is not BLIP's own; ``engine="generate"`` calls ``model.generate``.
    """
    config.check_engine(engine)
    if engine == "fast" and type(model).generate is not BlipForConditionalGeneration.generate:
        raise UnsupportedDecoding(f"the 'fast' decoding engine decodes BlipForConditionalGeneration.generate; "
                                  f"{type(model).__name__} overrides it (use engine='generate')")
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    captions: list[str] = []
    kwargs = config.generate_kwargs()
    for start in range(0, len(images_uint8), batch_size):
        chunk = images_uint8[start:start + batch_size]
        chunk = torch.from_numpy(np.ascontiguousarray(chunk)) if isinstance(chunk, np.ndarray) else chunk
        pv = pixel_values(chunk.to(device), processor)
        interpolate = _needs_interpolation(model, pv)
        if engine == "fast":
            out = fast_generate(model, pv, interpolate_pos_encoding=interpolate, **kwargs)
        else:
            out = model.generate(pixel_values=pv, interpolate_pos_encoding=interpolate, **kwargs)
        # the first token is [DEC], which the hub tokenizers do not know: drop it before decoding
        captions += [c.strip() for c in processor.tokenizer.batch_decode(out[:, 1:], skip_special_tokens=True)]
    model.train(was_training)
    return captions
