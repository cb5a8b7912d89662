"""Decoding images of any mode to RGB, with errors that name the file.

ROCOv2 images come from PubMed figures: greyscale (L), 16-bit (I;16), 32-bit integer (I), palette
(P), CMYK, and RGBA/LA with transparency all occur. Used by the image cache (notebook 00) and by
``python -m medcap_utils.runner.caption``.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile

# A truncated JPEG must fail loudly rather than come back half grey.
ImageFile.LOAD_TRUNCATED_IMAGES = False


class ImageDecodeError(OSError):
    """An image file that cannot be decoded; ``source`` names it."""

    def __init__(self, source: str, reason: str):
        super().__init__(f"cannot decode image {source}: {reason}")
        self.source = source


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB. Transparent pixels are composited on black (radiology background);
    high-bit-depth greyscale is min-max scaled to 8 bits instead of clipped."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        lo, hi = float(array.min()), float(array.max())
        scaled = np.zeros_like(array) if hi <= lo else (array - lo) * (255.0 / (hi - lo))
        return Image.fromarray(scaled.round().astype(np.uint8), mode="L").convert("RGB")
    if image.mode == "P":
        image = image.convert("RGBA") if "transparency" in image.info else image.convert("RGB")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def decode_rgb(data: bytes, source: str = "<bytes>") -> Image.Image:
    """Decode encoded image bytes fully (so truncation is detected now) and return RGB."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return to_rgb(image)
    except Exception as error:  # PIL raises OSError, SyntaxError, ValueError... depending on format
        raise ImageDecodeError(source, f"{type(error).__name__}: {error}") from error


def open_rgb(path: str | Path) -> Image.Image:
    """Open one image file (or ``zip://archive::member`` source) as RGB; raises ImageDecodeError."""
    from medcap_utils.data.files import ImageSourceError, read_image_bytes

    source = str(path)
    try:
        data = read_image_bytes(source)  # refuses a FIFO or directory without opening it, names zip damage
    except ImageSourceError as error:
        raise ImageDecodeError(source, error.reason) from error
    return decode_rgb(data, source)
