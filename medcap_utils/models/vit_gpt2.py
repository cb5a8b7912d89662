"""ViT-GPT2, seed 001's transformer baseline: a ViT encoder and a GPT-2 decoder joined by cross-attention.

Real runs load ``nlpconnect/vit-gpt2-image-captioning`` (``VisionEncoderDecoderModel``). The demo
builds a small ViT + GPT-2 from configs with the offline tokenizer of ``causal_tokenizer``, saves it
with ``save_pretrained`` and loads it back through :func:`load_vit_gpt2`. Used by notebook 03.

Targets: labels are the caption tokens plus the end token, padding set to -100. The model shifts
labels right itself and puts ``decoder_start_token_id`` first, so labels carry no start token.
"""
from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    AutoImageProcessor,
    AutoTokenizer,
    GPT2Config,
    VisionEncoderDecoderConfig,
    VisionEncoderDecoderModel,
    ViTConfig,
    ViTImageProcessor,
)

VIT_GPT2_ID = "nlpconnect/vit-gpt2-image-captioning"


def load_vit_gpt2(path_or_id: str | Path = VIT_GPT2_ID, device=None):
    """``(model, image_processor, tokenizer)`` from a hub id or a directory written by
    :func:`build_demo_vit_gpt2`. Used by notebook 03."""
    from medcap_utils.hub import from_pretrained  # a missing or corrupt checkpoint: one clear error

    path = str(path_or_id)
    model = from_pretrained(VisionEncoderDecoderModel, path)
    image_processor = from_pretrained(AutoImageProcessor, path)
    tokenizer = from_pretrained(AutoTokenizer, path)
    if tokenizer.pad_token is None:
        # GPT-2 has no padding token; nlpconnect pads with the end token (id 50256), so do we.
        tokenizer.pad_token = tokenizer.eos_token
    for cfg in (model.config, model.generation_config):
        cfg.pad_token_id = tokenizer.pad_token_id
        if cfg.decoder_start_token_id is None:
            cfg.decoder_start_token_id = tokenizer.bos_token_id
    if device is not None:
        model.to(device)
    return model.eval(), image_processor, tokenizer


def build_demo_vit_gpt2(
    out_dir: str | Path,
    tokenizer,
    image_size: int = 64,
    patch_size: int = 8,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    max_positions: int = 128,
    seed: int = 0,
) -> Path:
    """A small random ViT-GPT2 with the real architecture, saved to ``out_dir`` with its image
    processor and tokenizer (notebook 03 trains it on the demo data)."""
    torch.manual_seed(seed)
    encoder = ViTConfig(hidden_size=hidden_size, num_hidden_layers=num_layers, num_attention_heads=num_heads,
                        intermediate_size=2 * hidden_size, image_size=image_size, patch_size=patch_size)
    decoder = GPT2Config(vocab_size=len(tokenizer), n_embd=hidden_size, n_layer=num_layers, n_head=num_heads,
                         n_positions=max_positions, add_cross_attention=True, is_decoder=True,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    config.decoder_start_token_id = tokenizer.bos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    config.eos_token_id = tokenizer.eos_token_id
    model = VisionEncoderDecoderModel(config=config)
    gen = model.generation_config
    gen.decoder_start_token_id, gen.bos_token_id = tokenizer.bos_token_id, tokenizer.bos_token_id
    gen.eos_token_id, gen.pad_token_id = tokenizer.eos_token_id, tokenizer.pad_token_id
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    # ViT's processor with ImageNet-style 0.5 mean/std, as nlpconnect's checkpoint uses.
    ViTImageProcessor(size={"height": image_size, "width": image_size}).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def vit_gpt2_labels(tokenizer, captions: list[str], max_length: int = 200) -> torch.Tensor:
    """Caption tokens + end token, truncated to ``max_length`` and padded to the longest, pad = -100.

    No start token: the model prepends ``decoder_start_token_id`` when it shifts the labels.
    """
    ids = [tokenizer(c, add_special_tokens=False)["input_ids"][: max_length - 1] + [tokenizer.eos_token_id]
           for c in captions]
    width = max(len(row) for row in ids)
    labels = torch.full((len(ids), width), -100, dtype=torch.long)
    for i, row in enumerate(ids):
        labels[i, : len(row)] = torch.tensor(row)
    return labels


def vit_gpt2_loss(model, batch) -> torch.Tensor:
    """Loss for ``training.fit`` on ``{"pixel_values", "labels"}`` batches."""
    labels = batch["labels"]
    # Decoder inputs are the labels shifted right behind the start token; they are real tokens where
    # the previous label is. Padding sits after the caption, so this mask only silences the warning
    # and keeps padded positions out of any non-causal use.
    mask = torch.ones_like(labels)
    mask[:, 1:] = (labels[:, :-1] != -100).long()
    return model(pixel_values=batch["pixel_values"], labels=labels, decoder_attention_mask=mask).loss


def make_vit_gpt2_collate(tokenizer, max_length: int = 200):
    """Items of ``captioning_data.CaptionImageCacheDataset`` -> ``{"images" uint8, "labels"}``."""

    def collate(items: list[dict]) -> dict:
        return {"images": torch.stack([it["image"] for it in items]),
                "labels": vit_gpt2_labels(tokenizer, [it["caption"] for it in items], max_length)}

    return collate


def make_vit_gpt2_loss(image_processor):
    """``loss_fn(model, batch)`` for ``training.fit``: uint8 images are normalised on the device."""
    from medcap_utils.data.cache import normalize_uint8

    def loss_fn(model, batch) -> torch.Tensor:
        pixels = normalize_uint8(batch["images"], image_processor.image_mean, image_processor.image_std)
        return vit_gpt2_loss(model, {"pixel_values": pixels, "labels": batch["labels"]})

    return loss_fn
