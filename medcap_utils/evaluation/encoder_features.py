"""Image features from a pretrained stand-in encoder, for the nearest-neighbour retrieval baseline of notebook 08.

Raw pixels compare layout and colour; a pretrained encoder compares what it learned to see. Issue 17 asks for the
nearest training image "by pixels and by the stand-in encoder's features": this module gives the second. The
encoder is any saved model folder the project writes or loads the same way as a hub checkpoint:

- ``model_type: blip`` (a BLIP captioner, e.g. the demo's general-domain stand-in): its vision transformer, the
  mean of the last hidden states over all tokens (the captioner's decoder cross-attends to every token, so no
  single token is trained to summarise the image);
- ``model_type: resnet`` (a ResNet classifier or backbone, the ImageNet stand-in): the pooled last stage.

Images come from the project's image cache at the encoder's input size and are normalised with the folder's own
image mean and standard deviation, as its processor would. Features are L2-normalised; compare them by cosine.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

ENCODER_KINDS = ("blip", "resnet")


def _model_type(model_dir: Path) -> str:
    config = model_dir / "config.json"
    if not config.exists():
        raise FileNotFoundError(f"{model_dir}: no config.json, so no encoder to take features from")
    kind = json.loads(config.read_text()).get("model_type")
    if kind not in ENCODER_KINDS:
        raise ValueError(f"{model_dir}: model_type {kind!r}; features are taken from {ENCODER_KINDS}")
    return kind


def _load(model_dir: Path, kind: str):
    """``(encode(pixel_values) -> (B, D), input size, image mean, image std)`` for one model folder."""
    if kind == "blip":
        from medcap_utils.models.blip import image_size_of, load_blip

        model, processor = load_blip(model_dir)
        vision = model.vision_model.eval()
        ip = processor.image_processor
        return (lambda pv: vision(pixel_values=pv).last_hidden_state.mean(dim=1)), image_size_of(processor), \
            ip.image_mean, ip.image_std
    from transformers import ResNetModel

    from medcap_utils.hub import from_pretrained

    backbone = from_pretrained(ResNetModel, str(model_dir)).eval()
    prep = model_dir / "preprocessor_config.json"
    settings = json.loads(prep.read_text()) if prep.exists() else {}
    size = settings.get("size", {})
    size = size.get("shortest_edge") or size.get("height") if isinstance(size, dict) else size
    mean = settings.get("image_mean", [0.485, 0.456, 0.406])  # ImageNet's, transformers' ResNet default
    std = settings.get("image_std", [0.229, 0.224, 0.225])
    return (lambda pv: backbone(pixel_values=pv).pooler_output.flatten(1)), int(size or 64), mean, std


@torch.no_grad()
def encoder_features(data_dir, split: str, model_dir, batch_size: int = 64) -> tuple[list[str], np.ndarray]:
    """``(ids, (N, D) float32, unit rows)``: every image of ``split`` through the encoder of ``model_dir``."""
    from medcap_utils.data.cache import get_image_cache, normalize_uint8
    from medcap_utils.paths import resolve

    model_dir = Path(resolve(model_dir))
    encode, size, mean, std = _load(model_dir, _model_type(model_dir))
    cache = get_image_cache(resolve(data_dir), split, size)
    chunks = []
    for start in range(0, len(cache), batch_size):
        batch = torch.from_numpy(np.array(cache.images[start:start + batch_size]))  # a writable copy of the memory map
        chunks.append(encode(normalize_uint8(batch, mean, std).float()).float().numpy())
    feats = np.concatenate(chunks) if chunks else np.zeros((0, 1), dtype=np.float32)
    feats /= np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
    return list(cache.ids), feats.astype(np.float32)
