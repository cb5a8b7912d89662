"""Seed 004's training augmentation: horizontal flip, vertical flip and centre crop, on whole batches.

Used by notebook ``07_explainable_lstm_captioner``. Plain torch ops on (B, 3, H, W) or (B, H, W, 3)
tensors, uint8 or float, so they run on the uint8 image cache before normalisation (torchvision is
not a dependency). The paper "augments the training set with vertical and horizontal flipping and
crop-centering" without probabilities or crop size; we apply each at random per image (p = 0.5 for
the flips, ``crop_p`` for a centre crop of ``crop_fraction`` of the side, resized back).

Caveat worth knowing: a horizontal flip swaps left and right in the image but not in the caption.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from medcap_utils.data.batch_augment import resize_batch


@dataclass
class FlipCropConfig:
    """Probabilities and crop size (paper states none of them; see the recipe)."""

    hflip_p: float = 0.5
    vflip_p: float = 0.5
    crop_p: float = 0.5
    crop_fraction: float = 0.875  # side of the centre crop as a fraction of the image side


def _channels_first(images: torch.Tensor) -> tuple[torch.Tensor, bool]:
    last = images.dim() == 4 and images.shape[-1] == 3 and images.shape[1] != 3
    return (images.permute(0, 3, 1, 2) if last else images), last


def center_crop(images: torch.Tensor, fraction: float) -> torch.Tensor:
    """The central ``fraction`` of each side, resized back to the input size; dtype kept."""
    x, last = _channels_first(images)
    H, W = x.shape[-2:]
    h, w = max(1, round(H * fraction)), max(1, round(W * fraction))
    top, left = (H - h) // 2, (W - w) // 2
    crop = x[..., top:top + h, left:left + w]
    out = resize_batch(crop.float(), H) if (h, w) != (H, W) else crop.float()
    if images.dtype == torch.uint8:
        out = out.round().clamp(0, 255).to(torch.uint8)
    else:
        out = out.to(images.dtype)
    return out.permute(0, 2, 3, 1) if last else out


def random_flip_crop(images: torch.Tensor, cfg: FlipCropConfig,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Each image independently: horizontal flip, vertical flip, centre crop with their probabilities."""
    x, last = _channels_first(images)
    B = x.shape[0]
    draw = torch.rand(3, B, generator=generator).to(x.device)
    hflip, vflip, crop = draw[0] < cfg.hflip_p, draw[1] < cfg.vflip_p, draw[2] < cfg.crop_p
    x = torch.where(hflip.view(B, 1, 1, 1), x.flip(-1), x)
    x = torch.where(vflip.view(B, 1, 1, 1), x.flip(-2), x)
    if bool(crop.any()):
        x = x.clone()
        x[crop] = center_crop(x[crop], cfg.crop_fraction)
    return x.permute(0, 2, 3, 1) if last else x
