"""CLIPScore and RefCLIPScore as Hessel et al. (2021) define them, with transformers' CLIPModel.

CLIP-S(c, v) = w * max(cos(E_text("A photo depicts " + c), E_image(v)), 0), w = 2.5.
RefCLIP-S = harmonic mean of CLIP-S and max(max_r cos(E_text(c), E_text(r)), 0); references get the
same prefix (as in the authors' code). Texts longer than CLIP's 77 tokens are truncated (as their
code does) and counted. Not torchmetrics' CLIPScore, which is 100 * cos.

Used by notebook 08 (2024 protocol). The default model id is the paper's ViT-B/32; any CLIP id or a
local directory works (tests use a tiny random CLIP saved with ``save_pretrained``).
"""
from __future__ import annotations

import numpy as np

from medcap_utils.metrics import MetricUnavailable, default_device

DEFAULT_CLIP = "openai/clip-vit-base-patch32"
PREFIX = "A photo depicts "
W = 2.5


def load_clip(model_id: str = DEFAULT_CLIP, device: str | None = None):
    """``(model, processor)`` in eval mode; raises :class:`MetricUnavailable` when not loadable."""
    from transformers import CLIPModel, CLIPProcessor

    try:
        model = CLIPModel.from_pretrained(model_id).eval()
        processor = CLIPProcessor.from_pretrained(model_id)
    except (OSError, ValueError) as err:
        raise MetricUnavailable(f"CLIP model {model_id!r} could not be loaded: {str(err)[:300]}") from err
    device = device or default_device()
    return model.to(device), processor


def _unit(x):
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _features(output):
    # transformers 5 may return a model-output object instead of a tensor for get_*_features
    return output if hasattr(output, "norm") else output.pooler_output


def embed_texts(model, processor, texts: list[str], batch_size: int = 64) -> tuple[np.ndarray, int]:
    """Unit-norm text embeddings of ``PREFIX + text`` and how many texts were cut at the max length."""
    import torch

    tok = processor.tokenizer
    max_len = model.config.text_config.max_position_embeddings  # 77 for OpenAI CLIP
    full = [PREFIX + t for t in texts]
    n_truncated = sum(len(ids) > max_len for ids in tok(full, truncation=False)["input_ids"])
    out = []
    with torch.no_grad():
        for i in range(0, len(full), batch_size):
            enc = tok(full[i:i + batch_size], padding=True, truncation=True, max_length=max_len, return_tensors="pt")
            enc = {k: v.to(model.device) for k, v in enc.items()}
            out.append(_unit(_features(model.get_text_features(**enc)).float()).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, model.config.projection_dim)), int(n_truncated)


def _as_rgb(image):
    from PIL import Image

    if isinstance(image, Image.Image):
        return image.convert("RGB")
    from medcap_utils.data.images import open_rgb  # paths and zip://archive::member sources

    return open_rgb(image)  # opened per batch so 10k images are never all in memory


def embed_images(model, processor, images: list, batch_size: int = 32) -> np.ndarray:
    """Unit-norm image embeddings of PIL images or image paths (CLIP's own resize / crop / normalisation)."""
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            batch = [_as_rgb(im) for im in images[i:i + batch_size]]
            pix = processor.image_processor(images=batch, return_tensors="pt")["pixel_values"]
            out.append(_unit(_features(model.get_image_features(pixel_values=pix.to(model.device))).float()).cpu())
    return torch.cat(out).numpy()


def clip_scores(images: list, candidates: list[str], references: list[list[str]] | None = None,
                model_id: str = DEFAULT_CLIP, device: str | None = None, batch_size: int = 32,
                model_and_processor=None) -> dict:
    """Per-image ``clip_s`` (and ``refclip_s`` when ``references`` are given), raw ``cos``, counts.

    ``images``: PIL images or paths.
    ``references``: one list of reference captions per image. ``n_truncated`` counts candidate and
    reference texts longer than 77 tokens after the prefix.
    """
    if len(images) != len(candidates):
        raise ValueError("images and candidates differ in length")
    model, processor = model_and_processor or load_clip(model_id, device)
    img = embed_images(model, processor, images, batch_size)
    cand, n_trunc = embed_texts(model, processor, candidates, batch_size)
    cos = np.sum(img * cand, axis=1)
    clip_s = W * np.clip(cos, 0, None)
    out = {"clip_s": clip_s, "cos": cos, "n_truncated": n_trunc, "model_id": model_id,
           "revision": getattr(model.config, "_commit_hash", None)}
    if references is not None:
        flat = [r for refs in references for r in refs]
        ref_emb, n_ref_trunc = embed_texts(model, processor, flat, batch_size)
        best, start = np.zeros(len(candidates)), 0
        for i, refs in enumerate(references):
            sims = ref_emb[start:start + len(refs)] @ cand[i]
            best[i] = max(float(sims.max()) if len(refs) else 0.0, 0.0)
            start += len(refs)
        denom = clip_s + best
        out["refclip_s"] = np.divide(2 * clip_s * best, denom, out=np.zeros_like(denom), where=denom > 0)
        out["n_truncated"] = n_trunc + n_ref_trunc
    return out
