"""A decode-once image cache: every image of a split resized to a model resolution, stored as uint8.

Training then reads a memory-mapped ``(N, size, size, 3)`` uint8 array instead of JPEG files, and
normalisation happens on the device (:func:`normalize_uint8`). The cache directory is keyed by a
fingerprint of the source files (names, sizes, modification times) and the resolution, so a changed
dataset or another size gets its own cache. Built in notebook 00; read by notebooks 02-07.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from medcap_utils.atomic import atomic_directory, ensure_free_space
from medcap_utils.data.images import open_rgb
from medcap_utils.data.rocov2 import split_files, split_frame
from medcap_utils.paths import repo_root
from medcap_utils.progress import tqdm

CACHE_VERSION = 1  # bump when the resize recipe changes, so old caches are not reused


@dataclass
class ImageCache:
    """Images of one split as a read-only uint8 array plus the ID order."""

    path: Path
    ids: list[str]
    images: np.ndarray  # (N, size, size, 3) uint8, memory-mapped
    index: dict[str, int] = field(default_factory=dict)

    def __post_init__(self):
        self.index = {image_id: row for row, image_id in enumerate(self.ids)}

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, image_id: str) -> np.ndarray:
        return self.images[self.index[image_id]]

    @property
    def size(self) -> int:
        return int(self.images.shape[1])


def fingerprint(root: str | Path, split: str, size: int) -> str:
    """Hash of the split's caption CSV and image files (name, byte size, mtime) and the size."""
    files = split_files(root, split)
    digest = hashlib.sha256(f"v{CACHE_VERSION}|{split}|{size}".encode())
    sources = [files["captions"], files["images_zip"]]
    if files["images_dir"].is_dir():
        sources += sorted(files["images_dir"].iterdir())
    for path in sources:
        if path.exists():
            stat = path.stat()
            digest.update(f"{path.name}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def resize_square(image: Image.Image, size: int) -> np.ndarray:
    """Resize to ``size`` x ``size`` with bicubic filtering (what BLIP's processor does at 224/384);
    aspect ratio is not kept, matching the seeds' 224x224 resize."""
    return np.asarray(image.resize((size, size), Image.BICUBIC), dtype=np.uint8)


def default_cache_dir() -> Path:
    return Path(os.environ.get("MEDCAP_CACHE", repo_root() / "reports" / "cache"))


def cache_path(root, split: str, size: int, cache_dir=None) -> Path:
    """Where the cache of ``(root, split, size)`` lives: one folder per fingerprint."""
    key = fingerprint(root, split, size)
    return Path(cache_dir or default_cache_dir()) / f"{Path(root).resolve().name}-{split}-{size}-{key}"


def build_image_cache(root, split: str, size: int, cache_dir=None, workers: int | None = None) -> ImageCache:
    """Decode and resize every image of ``split`` once; raises ImageDecodeError naming a bad file,
    MalformedCSVError for a caption CSV ``check`` would fail, DiskFullError when the array will not fit.

    The folder is built under a temporary name and renamed when complete (:func:`atomic_directory`), so a
    kill or an error never leaves a folder that :func:`get_image_cache` would take for a finished cache."""
    frame = split_frame(root, split)  # refuses repeated IDs, malformed rows, empty captions
    out = cache_path(root, split, size, cache_dir)
    shape = (len(frame), size, size, 3)
    with atomic_directory(out) as tmp:
        # A memory-mapped write past the end of the disk is a SIGBUS with no message: check first.
        ensure_free_space(out / "images.npy", needed=int(np.prod(shape)) + 4096)  # + the .npy header
        array = np.lib.format.open_memmap(tmp / "images.npy", mode="w+", dtype=np.uint8, shape=shape)

        def load(row: int) -> None:
            array[row] = resize_square(open_rgb(frame["image_path"].iloc[row]), size)

        # PIL releases the GIL while decoding, so threads use every core without pickling arrays.
        with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
            list(tqdm(pool.map(load, range(len(frame))), total=len(frame), desc=f"cache {split} {size}px"))
        array.flush()
        del array
        (tmp / "meta.json").write_text(json.dumps({"ids": frame["id"].tolist(), "size": size, "split": split,
                                                   "source": str(Path(root).resolve())}))
    cache, reason = _open(out)
    if cache is None:
        raise CacheError(f"the image cache just written to {out} does not read back: {reason}")
    return cache


class CacheError(OSError):
    """An image cache folder that cannot be used; names the folder."""


def _open(out: Path) -> tuple[ImageCache | None, str]:
    """``(cache, "")``, or ``(None, why)`` for a folder that is damaged or half written (a truncated
    ``meta.json``, an ``images.npy`` shorter than its header says, IDs that do not match the rows)."""
    try:
        meta = json.loads((out / "meta.json").read_text(encoding="utf-8"))
        images = np.load(out / "images.npy", mmap_mode="r")
    except (OSError, ValueError) as error:  # JSONDecodeError and a short .npy are ValueErrors
        return None, f"{type(error).__name__}: {error}"
    ids, size = meta.get("ids") if isinstance(meta, dict) else None, meta.get("size") if isinstance(meta, dict) else None
    if not isinstance(ids, list) or not isinstance(size, int):
        return None, "meta.json has no ids list or size"
    if images.dtype != np.uint8 or images.shape != (len(ids), size, size, 3):
        return None, f"images.npy is {images.dtype} {images.shape}, meta.json says {len(ids)} images of {size}px"
    if len(set(ids)) != len(ids):
        return None, "meta.json repeats an ID"
    return ImageCache(path=out, ids=ids, images=images), ""


def get_image_cache(root, split: str, size: int, cache_dir=None) -> ImageCache:
    """The cache for ``(root, split, size)``, built on first use. Used by notebooks 00 and 02-07.
    A damaged or half-written cache folder is rebuilt (with a warning saying why), never trusted."""
    out = cache_path(root, split, size, cache_dir)
    if out.exists():
        cache, reason = _open(out)
        if cache is not None:
            return cache
        warnings.warn(f"rebuilding the damaged image cache {out}: {reason}", stacklevel=2)
    return build_image_cache(root, split, size, cache_dir=cache_dir)


def normalize_uint8(batch, mean, std):
    """uint8 images ``(B, H, W, 3)`` or ``(B, 3, H, W)`` -> float ``(B, 3, H, W)`` normalised on the
    batch's device, so the data loader moves 1 byte per pixel instead of 4."""
    import torch

    if batch.dim() == 4 and batch.shape[-1] == 3 and batch.shape[1] != 3:
        batch = batch.permute(0, 3, 1, 2)
    mean_t = torch.as_tensor(mean, device=batch.device, dtype=torch.float32).view(1, 3, 1, 1)
    std_t = torch.as_tensor(std, device=batch.device, dtype=torch.float32).view(1, 3, 1, 1)
    return (batch.float().div_(255.0) - mean_t) / std_t


def read_throughput(cache: ImageCache, batch_size: int = 256, batches: int = 20, seed: int = 0) -> float:
    """Images/s for random batches gathered from the cache into a torch uint8 tensor (what a
    training step consumes before the device normalises it). Used by notebook 00."""
    import time

    import torch

    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    for _ in range(batches):
        rows = np.sort(rng.choice(len(cache), size=min(batch_size, len(cache)), replace=False))
        torch.from_numpy(np.ascontiguousarray(cache.images[rows]))
    return batches * min(batch_size, len(cache)) / (time.perf_counter() - start)
