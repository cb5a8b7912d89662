"""What ``python -m medcap_utils.runner.bench`` measures with: the BLIP configurations (tiny, base, large) built
with random weights, the device and its peak TFLOP/s, the benchmark's images and captions, FLOP counting and the
step timer. Shared with :mod:`medcap_utils.runner.loss_curves` (issue 6's speed and parity measurements; no
notebook runs them).
"""
from __future__ import annotations

import datetime as dt
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

#: dense bf16 (and fp32 non-tensor-core) peak TFLOP/s by device-name fragment, from the vendors' datasheets
PEAK_TFLOPS = {"H100 PCIe": (756, 51), "H100 NVL": (835, 60), "H100": (989, 67), "H200": (989, 67),
               "GH200": (989, 67), "A100": (312, 19.5), "L40S": (362, 91.6), "A10G": (70, 31)}


def blip_config(name: str, vocab_size: int = 30524):
    """``BlipConfig`` of Salesforce/blip-image-captioning-{base,large} (or a tiny one), written out here."""
    from transformers import BlipConfig

    from medcap_utils.models.blip import demo_blip_config

    if name == "tiny":
        return demo_blip_config(vocab_size, 30522, 0, 102, image_size=64, vision_hidden=64, vision_layers=2,
                                text_hidden=64, text_layers=2, heads=4, max_positions=512)
    vision_hidden, layers, heads = {"base": (768, 12, 12), "large": (1024, 24, 16)}[name]
    vision = dict(hidden_size=vision_hidden, intermediate_size=4 * vision_hidden, num_hidden_layers=layers,
                  num_attention_heads=heads, image_size=384, patch_size=16, layer_norm_eps=1e-5, hidden_act="gelu")
    text = dict(vocab_size=vocab_size, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                num_attention_heads=12, encoder_hidden_size=vision_hidden, max_position_embeddings=512,
                bos_token_id=30522, pad_token_id=0, sep_token_id=102, eos_token_id=2, label_smoothing=0.1)
    return BlipConfig(text_config=text, vision_config=vision, projection_dim=512, image_text_hidden_size=256)


def device_info() -> dict:
    import transformers

    cuda = torch.cuda.is_available()
    name = torch.cuda.get_device_name() if cuda else (platform.processor() or platform.machine() or "cpu")
    return {"device": name, "device_kind": "cuda" if cuda else "cpu", "torch": torch.__version__,
            "transformers": transformers.__version__, "python": sys.version.split()[0],
            "cuda": torch.version.cuda if cuda else None, "cpu_threads": torch.get_num_threads(),
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


def peak_tflops(device: str, dtype: torch.dtype) -> float | None:
    for key, (bf16, fp32) in PEAK_TFLOPS.items():
        if key in device:
            return bf16 if dtype in (torch.bfloat16, torch.float16) else fp32
    return None


def bench_data(data_dir: str | None, image_size: int, captions_csv: str | None):
    """uint8 images ``(N, S, S, 3)`` from the image cache and caption strings (demo set synthesised if needed)."""
    from medcap_utils.data.cache import get_image_cache
    from medcap_utils.data.rocov2 import read_captions, split_frame
    from medcap_utils.paths import resolve

    root = Path(resolve(data_dir)) if data_dir else None
    if root is None or not (root / "train_captions.csv").exists():
        from medcap_utils.data.synth import synthesize

        root = Path(tempfile.mkdtemp(prefix="medcap-bench-"))
        synthesize(root, seed=0, n_train=64, n_valid=1, n_test=1, image_size=max(image_size, 64))
    cache = get_image_cache(root, "train", image_size)
    captions = split_frame(root, "train")["caption"].tolist()
    if captions_csv:
        captions = read_captions(captions_csv)["Caption"].tolist()
    return np.asarray(cache.images), captions


def log(message: str) -> None:
    """Progress on stderr with the time (a GPU run that hits its time limit still says how far it got)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn, steps: int) -> float:
    sync()
    start = time.perf_counter()
    for i in range(steps):
        fn(i)
    sync()
    return time.perf_counter() - start


def peak_mem_gb():
    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None


def count_flops(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def bench_processor(tok):
    """The two things the loss functions read from a BLIP processor (CLIP mean/std as Salesforce's)."""
    image = type("ImageProcessor", (), {"image_mean": [0.48145466, 0.4578275, 0.40821073],
                                        "image_std": [0.26862954, 0.26130258, 0.27577711]})()
    return type("Processor", (), {"tokenizer": tok, "image_processor": image})()


def bench_dataset(images: np.ndarray, captions: list[str], n: int):
    """``n`` (image, caption) items cycling through ``images`` and ``captions`` independently, over an
    in-memory image cache (also used by :mod:`medcap_utils.runner.loss_curves`)."""
    from medcap_utils.data.cache import ImageCache
    from medcap_utils.training.captioning_data import CaptionImageCacheDataset

    ids = [f"img{i}" for i in range(len(images))]
    items = [ids[i % len(ids)] for i in range(n)]
    return CaptionImageCacheDataset(ImageCache(Path(tempfile.mkdtemp()), ids, images), items,
                                    [captions[i % len(captions)] for i in range(n)])


class StepTimer:
    """``on_step`` callback: times optimiser steps ``warmup+1 .. warmup+steps`` (synchronised at both ends),
    counts the host syncs of step ``warmup`` and optionally profiles three timed steps."""

    def __init__(self, warmup: int, steps: int, cuda: bool, profile: bool = False):
        self.warmup, self.steps, self.cuda, self.profile = warmup, steps, cuda, profile
        self.seconds, self.syncs, self.start, self.table = None, None, None, None
        self._warn, self._caught, self._prof = None, None, None

    def __call__(self, step: int) -> None:
        import warnings

        if self.cuda and step == self.warmup - 1:  # count the syncs of one whole step before timing
            self._warn = warnings.catch_warnings(record=True)
            self._caught = self._warn.__enter__()
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
        if step == self.warmup:
            if self._warn is not None:
                torch.cuda.set_sync_debug_mode("default")
                self._warn.__exit__(None, None, None)
                self.syncs = sum("synchroniz" in str(w.message).lower() for w in self._caught)
            sync()
            if self.cuda:
                torch.cuda.reset_peak_memory_stats()
            if self.profile:
                self._prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU] + (
                    [torch.profiler.ProfilerActivity.CUDA] if self.cuda else []))
                self._prof.__enter__()
            self.start = time.perf_counter()
        if self._prof is not None and step == self.warmup + 3:
            sync()
            self._prof.__exit__(None, None, None)
            key = "self_cuda_time_total" if self.cuda else "self_cpu_time_total"
            self.table = self._prof.key_averages().table(sort_by=key, row_limit=25, max_name_column_width=60)
            self._prof = None
        if step == self.warmup + self.steps:
            sync()
            self.seconds = time.perf_counter() - self.start
