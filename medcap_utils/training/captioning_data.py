"""Image-caption batches for BLIP-style training from the decode-once image cache.

Items are uint8 images (normalised later on the device) plus caption text; the collate function
tokenises a batch, truncates at the recipe's maximum (200 tokens) and pads only to the batch's
longest caption. Used by notebooks 02 and 03 through :func:`caption_dataset`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from medcap_utils.data.cache import ImageCache, get_image_cache
from medcap_utils.data.rocov2 import split_frame
from medcap_utils.models.blip import caption_targets


class CaptionImageCacheDataset(Dataset):
    """``{"id", "row", "image" (uint8 H x W x 3 tensor), "caption", "modality"}`` for the given IDs of a cache.

    ``with_images=False`` leaves the image out (the row in the cache is enough when the whole cache already
    sits on the GPU, see :func:`medcap_utils.training.blip.finetune_blip`).
    """

    def __init__(self, cache: ImageCache, ids: list[str], captions: list[str], modalities: list | None = None,
                 with_images: bool = True):
        if len(ids) != len(captions):
            raise ValueError("ids and captions differ in length")
        self.cache, self.ids, self.captions, self.with_images = cache, list(ids), list(captions), with_images
        self.rows = np.array([cache.index[i] for i in self.ids], dtype=np.int64)
        self.modalities = list(modalities) if modalities is not None else [None] * len(self.ids)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        item = {"id": self.ids[i], "row": int(self.rows[i]), "caption": self.captions[i],
                "modality": self.modalities[i]}
        if self.with_images:
            item["image"] = torch.from_numpy(np.array(self.cache.images[self.rows[i]]))  # copy out of the memory map
        return item

    def without_images(self) -> "CaptionImageCacheDataset":
        """The same items with rows instead of pixels (workers then pass only text between processes)."""
        return CaptionImageCacheDataset(self.cache, self.ids, self.captions, self.modalities, with_images=False)

    def images(self, indices=None) -> np.ndarray:
        """uint8 array of (a subset of) the images, in dataset order (for generation)."""
        rows = self.rows if indices is None else self.rows[np.asarray(indices)]
        return np.asarray(self.cache.images[rows])


def caption_dataset(data_dir: str | Path, split: str, image_size: int, limit: int | None = None,
                    cache_dir=None, frame=None) -> CaptionImageCacheDataset:
    """The split's images (cached at ``image_size``) with their captions and modalities.

    ``frame``: the split's :func:`split_frame` when the caller already read it. Both refuse a CSV that
    ``check`` fails (repeated IDs, malformed rows, empty captions), so no empty caption becomes a target."""
    frame = split_frame(data_dir, split) if frame is None else frame
    if limit is not None:
        frame = frame.iloc[:limit]
    cache = get_image_cache(data_dir, split, image_size, cache_dir=cache_dir)
    return CaptionImageCacheDataset(cache, frame["id"].tolist(), frame["caption"].tolist(),
                                    frame["modality"].tolist() if "modality" in frame else None)


def make_caption_collate(tokenizer, bos_token_id: int, max_length: int = 200, prompt: str | None = None):
    """Batch -> ``{"images" uint8 (B,H,W,3), "rows", "input_ids", "attention_mask", "labels", "ids"}`` (no
    ``images`` when the items carry none)."""

    def collate(items: list[dict]) -> dict:
        batch = caption_targets(tokenizer, [it["caption"] for it in items], bos_token_id, max_length, prompt)
        if "image" in items[0]:
            batch["images"] = torch.stack([it["image"] for it in items])
        batch["rows"] = torch.tensor([it["row"] for it in items])
        batch["ids"] = [it["id"] for it in items]
        return batch

    return collate
