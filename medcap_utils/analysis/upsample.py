"""Attention maps over a feature grid, brought to the image's size: the one ``upsample`` of ``analysis``.

Notebook 03 (BLIP cross-attention, :mod:`medcap_utils.analysis.cross_attention`) measures how much of a map's
mass falls in the finding's box, so it keeps the values as they are; notebook 07 (the LSTM's attention,
:mod:`medcap_utils.analysis.explain`) draws each map over the image, so it rescales every map to [0, 1].
Both interpolate the same way: bilinear, ``align_corners=False`` (each grid cell covers its pixels).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def upsample(maps, size: int | tuple[int, int], rescale: bool = False):
    """``(h, w)`` or ``(T, h, w)`` maps -> ``(H, W)`` or ``(T, H, W)``, bilinear; ``size`` an int (square) or
    ``(H, W)``. ``rescale``: each map to [0, 1] (min to 0, max to 1), for display. A tensor comes back as a
    tensor, anything else (a numpy array, a list) as a float32 numpy array."""
    as_tensor = isinstance(maps, torch.Tensor)
    t = maps if as_tensor else torch.as_tensor(np.asarray(maps, dtype=np.float32))
    size = (size, size) if isinstance(size, int) else tuple(size)
    single = t.dim() == 2
    t = t[None] if single else t
    up = F.interpolate(t[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    if rescale:
        lo = up.amin(dim=(1, 2), keepdim=True)
        hi = up.amax(dim=(1, 2), keepdim=True)
        up = (up - lo) / (hi - lo).clamp_min(1e-12)
    up = up[0] if single else up
    return up if as_tensor else up.numpy()
