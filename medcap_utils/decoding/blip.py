"""BLIP captions for a batch of images: the fast decoder (:mod:`medcap_utils.decoding.blip_fast`) or ``generate``."""
from __future__ import annotations

import numpy as np
import torch
from transformers import BlipForConditionalGeneration

from medcap_utils.decoding.blip_fast import UnsupportedGeneration, fast_generate
from medcap_utils.models.blip import _needs_interpolation, pixel_values


@torch.no_grad()
def generate_captions(model, processor, images_uint8, batch_size: int = 64, num_beams: int = 1,
                      max_new_tokens: int = 40, no_repeat_ngram_size: int = 0, device=None, engine: str = "fast",
                      **generate_kwargs) -> list[str]:
    """Captions for uint8 images ``(N, H, W, 3)`` (numpy or torch), in batches; greedy when ``num_beams=1``.

    ``engine="fast"`` decodes with :func:`medcap_utils.decoding.blip_fast.fast_generate` (the same tokens as
    ``model.generate``, proven by tests/test_fast_decode.py; options it does not implement, and models
    whose ``generate`` is not BLIP's, fall back to ``generate``); ``engine="hf"`` always calls ``generate``.
    """
    if engine not in ("fast", "hf"):
        raise ValueError(f"engine must be 'fast' or 'hf', not {engine!r}")
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    captions: list[str] = []
    kwargs = dict(num_beams=num_beams, max_new_tokens=max_new_tokens, no_repeat_ngram_size=no_repeat_ngram_size,
                  **generate_kwargs)
    for start in range(0, len(images_uint8), batch_size):
        chunk = images_uint8[start:start + batch_size]
        chunk = torch.from_numpy(np.ascontiguousarray(chunk)) if isinstance(chunk, np.ndarray) else chunk
        pv = pixel_values(chunk.to(device), processor)
        out = _generate(model, pv, _needs_interpolation(model, pv), engine, kwargs)
        # the first token is [DEC], which the hub tokenizers do not know: drop it before decoding
        captions += [c.strip() for c in processor.tokenizer.batch_decode(out[:, 1:], skip_special_tokens=True)]
    model.train(was_training)
    return captions


def _generate(model, pv, interpolate: bool, engine: str, kwargs: dict) -> torch.Tensor:
    if engine == "fast" and type(model).generate is BlipForConditionalGeneration.generate:
        try:
            return fast_generate(model, pv, interpolate_pos_encoding=interpolate, **kwargs)
        except UnsupportedGeneration:
            pass
    return model.generate(pixel_values=pv, interpolate_pos_encoding=interpolate, **kwargs)
