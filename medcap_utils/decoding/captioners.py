"""Seed 000's decoding grid: greedy and beam search 3, 4, 5, 10, all with ``no_repeat_ngram_size=3``.

Each configuration captions a split in batches, measures captions per second and peak memory, and
writes ``reports/runs/<name>/`` (ImageCLEF run file + ``run.json`` via ``runfiles.write_run_dir``,
the metrics JSON from ``evaluate.evaluate_captions`` and ``decoding.json`` with speed and memory).
Used by notebook 04 (and notebook 03 for the baselines' test captions).
"""
from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from medcap_utils.data.cache import normalize_uint8


@dataclass(frozen=True)
class DecodingConfig:
    """One row of seed 000's grid. ``label`` is the paper's numbering, (1) to (5)."""

    name: str
    num_beams: int
    no_repeat_ngram_size: int = 3
    label: str = ""

    def generate_kwargs(self, max_new_tokens: int) -> dict:
        # Everything else stays at the generation defaults (length_penalty 1.0, no early stopping),
        # which is what the authors' scripts leave unset too.
        return {"num_beams": self.num_beams, "no_repeat_ngram_size": self.no_repeat_ngram_size,
                "do_sample": False, "max_new_tokens": max_new_tokens}


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
    """A model wrapped for batched captioning from uint8 ``(B, H, W, 3)`` image batches.

    ``caption(images, **generate_kwargs) -> list[str]``; ``image_size`` tells which cache to read.
    """

    caption: Callable[..., list[str]]
    image_size: int
    model: torch.nn.Module

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def _image_size(image_processor) -> int:
    size = image_processor.size
    return int(size["height"] if "height" in size else size["shortest_edge"])


def blip_captioner(model, processor, engine: str = "fast") -> Captioner:
    """BLIP (``load_blip``): batches go through ``models.blip.generate_captions``.

    ``engine="fast"`` (default): ``medcap_utils.decoding.blip_fast`` (token-identical to ``generate``, faster);
    ``engine="hf"``: Hugging Face ``generate`` itself (the baseline of ``python -m medcap_utils.runner.bench decode``).
    """
    from medcap_utils.decoding.blip import generate_captions

    def caption(images: np.ndarray, **generate_kwargs) -> list[str]:
        return generate_captions(model, processor, images, batch_size=len(images), engine=engine, **generate_kwargs)

    return Captioner(caption, _image_size(processor.image_processor), model)


def encoder_decoder_captioner(model, image_processor, tokenizer) -> Captioner:
    """ViT-GPT2 (any ``VisionEncoderDecoderModel``): ``model.generate(pixel_values=...)``.

    Images are normalised on the model's device from the uint8 cache (resize was done once when the
    cache was built), so generation time is not spent in a PIL loop.
    """

    @torch.no_grad()
    def caption(images: np.ndarray, **generate_kwargs) -> list[str]:
        device = next(model.parameters()).device
        pixels = normalize_uint8(torch.from_numpy(np.ascontiguousarray(images)).to(device),
                                 image_processor.image_mean, image_processor.image_std)
        out = model.generate(pixel_values=pixels, **generate_kwargs)
        return [t.strip() for t in tokenizer.batch_decode(out, skip_special_tokens=True)]

    return Captioner(caption, _image_size(image_processor), model)


def blip2_captioner(model, processor) -> Captioner:
    """BLIP-2 / InstructBLIP: inputs go through the processor so the ``<image>`` placeholders are there."""
    from medcap_utils.models.blip2 import blip2_generate

    def caption(images: np.ndarray, **generate_kwargs) -> list[str]:
        return blip2_generate(model, processor, list(images), **generate_kwargs)

    return Captioner(caption, _image_size(processor.image_processor), model)


def caption_split(captioner: Captioner, images: np.ndarray, ids: list[str], batch_size: int = 16,
                  warmup: int = 1, repeats: int = 1, **generate_kwargs) -> tuple[dict[str, str], dict]:
    """Captions ``{id: caption}`` for ``images`` (uint8, row i = ``ids[i]``) plus timing and memory:
    ``{"seconds", "captions_per_s", "captions_per_s_median", "captions_per_s_min", "captions_per_s_max",
    "timed_calls", "warmup_calls", "warmup_s", "peak_mb", "delta_mb", "memory_kind"}``.

    ``warmup`` batches are captioned first and not timed (the first calls pay for allocation and lazy
    initialisation); then every batch is timed on its own (:func:`medcap_utils.timing.timed_calls`), the
    whole split ``repeats`` times. ``captions_per_s`` is over all timed batches; median and min-max are
    over the batches (which hold different images, so part of the spread is the images')."""
    from medcap_utils.timing import timed_calls

    captioner.model.eval()
    batches = [(ids[lo: lo + batch_size], images[lo: lo + batch_size]) for lo in range(0, len(ids), batch_size)]
    cuda = captioner.device.type == "cuda"
    sync = (lambda: torch.cuda.synchronize(captioner.device)) if cuda else None
    with PeakMemory(captioner.device) as memory:
        outs, timing = timed_calls(lambda b: captioner.caption(b[1], **generate_kwargs), batches, warmup=warmup,
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
