"""Timed captioning of a split (notebooks 03 and 04): one :class:`Captioner` per model family, which calls
:func:`medcap_utils.decoding.caption.caption`, and :func:`caption_split_with_speed`, which returns the captions
with captions per second and peak memory (:class:`PeakMemory`). Notebook 04 runs seed 000's decoding grid
(:mod:`medcap_utils.experiments.decoding_experiments`) through it; notebook 03 its comparison models.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch

from medcap_utils.decoding.caption import caption
from medcap_utils.decoding.config import DecodingConfig, as_config
from medcap_utils.models.blip import image_size_of


class PeakMemory:
    """Peak memory of a block, in MiB.

    On CUDA: ``torch.cuda.max_memory_allocated`` after a reset (tensors only). On CPU torch allocates
    outside Python, so tracemalloc would miss it; a thread samples the process RSS every few ms
    instead and reports the peak and the growth over the starting RSS (``peak_mb``, ``delta_mb``).
    """

    def __init__(self, device: torch.device | str = "cpu", interval_s: float = 0.005):
        self.device = torch.device(device)
        self.interval_s = interval_s
        self.peak_mb = self.delta_mb = float("nan")
        self.kind = "cuda_max_memory_allocated" if self.device.type == "cuda" else "cpu_rss_sampled"

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
        else:
            import psutil

            self._proc = psutil.Process()
            self._start = self._peak = self._proc.memory_info().rss
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self._peak = max(self._peak, self._proc.memory_info().rss)
            self._stop.wait(self.interval_s)

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()
            peak = max(self._peak, self._proc.memory_info().rss)
        self.peak_mb, self.delta_mb = peak / 2**20, (peak - self._start) / 2**20
        return False


@dataclass
class Captioner:
    """A model with what it needs to caption uint8 ``(B, H, W, 3)`` batches: ``caption(images, config)`` calls
    :func:`medcap_utils.decoding.caption.caption` (one batch); ``image_size`` tells which image cache to read."""

    model: torch.nn.Module
    image_size: int
    engine: str | None = None  # None: the family's default (BLIP: the fast decoder)
    processor: object = None  # BLIP / BLIP-2: the processor; ViT-GPT2: the image processor
    tokenizer: object = None  # ViT-GPT2 only

    def caption(self, images, config: DecodingConfig | Mapping[str, Any] | None = None) -> list[str]:
        return caption(self.model, images, config, engine=self.engine, batch_size=max(len(images), 1),
                       processor=self.processor, tokenizer=self.tokenizer)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def blip_captioner(model, processor, engine: str | None = None) -> Captioner:
    """BLIP (``load_blip``). ``engine``: None or ``"fast"`` for :mod:`medcap_utils.decoding.blip_fast`
    (token-identical to ``generate``, faster); ``"generate"`` for Hugging Face ``generate`` itself."""
    return Captioner(model, image_size_of(processor), engine, processor)


def encoder_decoder_captioner(model, image_processor, tokenizer) -> Captioner:
    """ViT-GPT2 (any ``VisionEncoderDecoderModel``): ``model.generate(pixel_values=...)``."""
    return Captioner(model, image_size_of(image_processor), None, image_processor, tokenizer)


def blip2_captioner(model, processor) -> Captioner:
    """BLIP-2 / InstructBLIP: inputs go through the processor so the ``<image>`` placeholders are there."""
    return Captioner(model, image_size_of(processor), None, processor)


def caption_split_with_speed(captioner: Captioner, images: np.ndarray, ids: list[str],
                             config: DecodingConfig | Mapping[str, Any] | None = None, batch_size: int = 16,
                             warmup: int = 1, repeats: int = 1) -> tuple[dict[str, str], dict]:
    """Captions ``{id: caption}`` for ``images`` (uint8, row i = ``ids[i]``) decoded as ``config`` says, plus
    timing and memory:
    ``{"seconds", "captions_per_s", "captions_per_s_median", "captions_per_s_min", "captions_per_s_max",
    "timed_calls", "warmup_calls", "warmup_s", "peak_mb", "delta_mb", "memory_kind"}``.

    ``warmup`` batches are captioned first and not timed (the first calls pay for allocation and lazy
    initialisation); then every batch is timed on its own (:func:`medcap_utils.timing.timed_calls`), the
    whole split ``repeats`` times. ``captions_per_s`` is over all timed batches; median and min-max are
    over the batches (which hold different images, so part of the spread is the images')."""
    from medcap_utils.timing import timed_calls

    config = as_config(config)
    captioner.model.eval()
    batches = [(ids[lo: lo + batch_size], images[lo: lo + batch_size]) for lo in range(0, len(ids), batch_size)]
    cuda = captioner.device.type == "cuda"
    sync = (lambda: torch.cuda.synchronize(captioner.device)) if cuda else None
    with PeakMemory(captioner.device) as memory:
        outs, timing = timed_calls(lambda b: captioner.caption(b[1], config), batches, warmup=warmup,
                                   repeats=repeats, sync=sync)
    preds = {image_id: text for (batch_ids, _), texts in zip(batches, outs) for image_id, text in zip(batch_ids, texts)}
    return preds, {"seconds": timing.total_seconds, **timing.summary("captions_per_s"), "repeats": repeats,
                   "peak_mb": memory.peak_mb, "delta_mb": memory.delta_mb, "memory_kind": memory.kind}


def repeated_ngrams(tokens: list[int], n: int = 3) -> list[tuple[int, ...]]:
    """The n-grams that occur more than once in ``tokens`` (tests use it on generated ids)."""
    seen, repeated = set(), []
    for i in range(len(tokens) - n + 1):
        gram = tuple(tokens[i: i + n])
        if gram in seen:
            repeated.append(gram)
        seen.add(gram)
    return repeated
