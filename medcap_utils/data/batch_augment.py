"""Random image augmentations applied to a whole batch of float tensors on the training device.

Used by notebook ``05_concept_detection_medcsra`` (MedCSRA's training recipe). torchvision is not a
dependency, so the geometric transforms are one ``affine_grid`` + ``grid_sample`` per batch: a
random resized crop, a horizontal flip and a rotation fold into a single 2x3 matrix per image.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# ITU-R 601 luma weights, the usual RGB -> grey conversion for colour jitter.
_LUMA = (0.299, 0.587, 0.114)


@dataclass
class AugmentConfig:
    """Parameters with the meaning of their torchvision namesakes (defaults: MedCSRA authors' code)."""
    out_size: int = 224  # RandomResizedCrop output side
    crop_scale: tuple[float, float] = (0.8, 1.0)  # fraction of the image area kept
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)  # aspect ratio range of the crop
    hflip_p: float = 0.5
    max_rotation_deg: float = 15.0
    brightness: float = 0.2  # factor drawn from [1 - b, 1 + b]
    contrast: float = 0.2
    saturation: float = 0.2


def _uniform(n: int, low: float, high: float, g: torch.Generator | None, device) -> torch.Tensor:
    return torch.rand(n, generator=g, device=device) * (high - low) + low


def random_affine_crop(images: torch.Tensor, cfg: AugmentConfig,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """Random resized crop, horizontal flip and rotation of (B, 3, H, W) images -> (B, 3, S, S).

    Output pixel p maps to input c + diag(w, h) · flip · rot · p in normalised [-1, 1] coordinates,
    so the crop has relative width w and height h (area w·h, aspect w/h in image units) and centre c.
    Pixels rotated in from outside the image are zero (torchvision's default fill).
    """
    b, dev = images.shape[0], images.device
    area = _uniform(b, *cfg.crop_scale, generator, dev)
    log_ratio = _uniform(b, math.log(cfg.crop_ratio[0]), math.log(cfg.crop_ratio[1]), generator, dev)
    ratio = log_ratio.exp()
    w = (area * ratio).sqrt().clamp(max=1.0)
    h = (area / ratio).sqrt().clamp(max=1.0)
    cx = _uniform(b, -1.0, 1.0, generator, dev) * (1 - w)
    cy = _uniform(b, -1.0, 1.0, generator, dev) * (1 - h)
    flip = torch.where(torch.rand(b, generator=generator, device=dev) < cfg.hflip_p, -1.0, 1.0)
    angle = _uniform(b, -cfg.max_rotation_deg, cfg.max_rotation_deg, generator, dev) * math.pi / 180
    cos, sin = angle.cos(), angle.sin()
    theta = torch.stack([
        torch.stack([w * flip * cos, -w * flip * sin, cx], dim=1),
        torch.stack([h * sin, h * cos, cy], dim=1),
    ], dim=1).to(images.dtype)
    grid = F.affine_grid(theta, [b, images.shape[1], cfg.out_size, cfg.out_size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def color_jitter(images: torch.Tensor, cfg: AugmentConfig,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Brightness, contrast and saturation jitter of (B, 3, H, W) images in [0, 1] (fixed order)."""
    b, dev = images.shape[0], images.device
    luma = torch.tensor(_LUMA, device=dev, dtype=images.dtype).view(1, 3, 1, 1)

    def factor(strength: float) -> torch.Tensor:
        return _uniform(b, 1 - strength, 1 + strength, generator, dev).view(b, 1, 1, 1).to(images.dtype)

    x = (images * factor(cfg.brightness)).clamp(0, 1)
    grey_mean = (x * luma).sum(1, keepdim=True).mean(dim=(2, 3), keepdim=True)
    x = ((x - grey_mean) * factor(cfg.contrast) + grey_mean).clamp(0, 1)
    grey = (x * luma).sum(1, keepdim=True)
    return ((x - grey) * factor(cfg.saturation) + grey).clamp(0, 1)


def resize_batch(images: torch.Tensor, size: int) -> torch.Tensor:
    """Evaluation-time resize of (B, 3, H, W) to (B, 3, size, size); a no-op at the same size."""
    if images.shape[-2:] == (size, size):
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def augment_batch(images: torch.Tensor, cfg: AugmentConfig,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """The MedCSRA authors' training pipeline: crop + flip + rotation, then colour jitter."""
    return color_jitter(random_affine_crop(images, cfg, generator), cfg, generator)
