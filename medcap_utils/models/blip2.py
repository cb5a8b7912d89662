"""BLIP-2 and InstructBLIP, seed 001's zero-shot comparison models.

Real runs load ``Salesforce/blip2-opt-2.7b`` and an InstructBLIP checkpoint zero-shot. The demo
builds small random configurations (ViT + Q-Former + OPT) with an offline tokenizer, saves them with
``save_pretrained`` and loads them back through :func:`load_blip2`, so both paths run the same code.

The trap this module exists for: in transformers 5 the language model receives the image only
through ``num_query_tokens`` ``<image>`` placeholders in ``input_ids``; the Q-Former outputs are
scattered into their embeddings. Ids without the placeholders run without error and the image is
silently ignored. :func:`blip2_inputs` builds inputs with the processor (which inserts the
placeholders when it knows ``num_query_tokens``) and refuses rows that do not carry exactly
``num_query_tokens`` of them. Used by notebook 03.
"""
from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    Blip2Config,
    Blip2ForConditionalGeneration,
    Blip2Processor,
    BlipImageProcessor,
    InstructBlipConfig,
    InstructBlipForConditionalGeneration,
    InstructBlipProcessor,
    OPTConfig,
)

from medcap_utils.device import inference_dtype

BLIP2_ID = "Salesforce/blip2-opt-2.7b"  # seed 001's "BLIP-2 base"
# Seed 001 says "BLIP-2 Instruct" without naming a checkpoint; the Vicuna-7B one keeps a decoder-only
# language model, so the same input builder serves both models.
INSTRUCTBLIP_ID = "Salesforce/instructblip-vicuna-7b"
# InstructBLIP is steered by an instruction; BLIP-2 captions from the image alone (empty prompt).
CAPTION_INSTRUCTION = "Write a short caption for this radiology image."


class ImageTokenError(ValueError):
    """Inputs would make BLIP-2 ignore the image (missing or miscounted ``<image>`` placeholders)."""


def _classes(instruct: bool):
    if instruct:
        return InstructBlipForConditionalGeneration, InstructBlipProcessor
    return Blip2ForConditionalGeneration, Blip2Processor


def image_token_id(processor) -> int:
    """Vocabulary id of the processor's ``<image>`` placeholder."""
    return processor.tokenizer.convert_tokens_to_ids(processor.image_token.content)


def check_processor_matches(model, processor) -> None:
    """Make the processor insert the placeholders the model expects, or raise.

    Older saved processors carry ``num_query_tokens=None``; the processor then inserts no
    placeholders at all, which is exactly the silent failure, so it is filled in from the model.
    """
    wanted = model.config.num_query_tokens
    if processor.num_query_tokens is None:
        processor.num_query_tokens = wanted
    if processor.num_query_tokens != wanted:
        raise ImageTokenError(f"processor num_query_tokens={processor.num_query_tokens}, model expects {wanted}")
    if image_token_id(processor) != model.config.image_token_id:
        raise ImageTokenError(
            f"processor <image> id {image_token_id(processor)} != model image_token_id {model.config.image_token_id}"
        )


def _load_qformer_tokenizer(processor, model, path_or_id) -> None:
    """InstructBLIP's Q-Former tokenizer lives in the ``qformer_tokenizer`` subfolder. For a hub id,
    transformers 5.24 first probes ``qformer_tokenizer/config.json`` (absent), and on that error silently
    falls back to the *language model's* tokenizer in the root, so the Q-Former would read Llama ids.
    Loading it with the config given skips the probe."""
    from transformers import AutoTokenizer

    from medcap_utils.hub import from_pretrained

    processor.qformer_tokenizer = from_pretrained(AutoTokenizer, path_or_id, subfolder="qformer_tokenizer",
                                                  config=model.config.qformer_config)


def load_blip2(path_or_id: str | Path = BLIP2_ID, instruct: bool = False, dtype=None, device=None):
    """``(model, processor)`` for BLIP-2 (or InstructBLIP with ``instruct=True``) from a hub id or a
    local directory written by :func:`build_demo_blip2`. Used by notebook 03.

    ``dtype=None``: :func:`medcap_utils.device.inference_dtype` of ``device`` (fp16 on a GPU, as LAVIS runs these
    models; fp32 on CPU or without a device). Ask :func:`medcap_utils.memory.fits_device` before loading a hub id."""
    from medcap_utils.hub import from_pretrained  # a missing or corrupt checkpoint: one clear error

    model_cls, processor_cls = _classes(instruct)
    processor = from_pretrained(processor_cls, path_or_id)
    dtype = inference_dtype(device or "cpu") if dtype is None else dtype  # not "auto" (the stored dtype)
    model = from_pretrained(model_cls, path_or_id, dtype=dtype)
    if instruct:
        _load_qformer_tokenizer(processor, model, path_or_id)
    check_processor_matches(model, processor)
    if device is not None:
        model.to(device)
    return model.eval(), processor


def is_instruct(model) -> bool:
    return isinstance(model, InstructBlipForConditionalGeneration)


def blip2_inputs(model, processor, images, captions=None, prompts=None):
    """Model inputs for a batch, built by the processor and checked against the model's
    ``num_query_tokens`` and ``image_token_id`` (an InstructBLIP model also gets Q-Former inputs).

    images: PIL images or uint8 HxWx3 arrays the image processor accepts.
    captions: training targets (labels are returned, -100 on placeholders, prompt and padding);
      ``None`` builds generation inputs (prompt only, so generation continues after ``<s>``).
    prompts: one per image; default empty for BLIP-2 and :data:`CAPTION_INSTRUCTION` for InstructBLIP.
    """
    n = len(images)
    instruct = is_instruct(model)
    if prompts is None:
        prompts = [CAPTION_INSTRUCTION if instruct else ""] * n
    tok = processor.tokenizer
    if captions is None:
        texts = list(prompts)
    else:
        # OPT's tokenizer appends no end token, so it is added to targets to teach the model to stop.
        texts = [f"{p} {c}".strip() + tok.eos_token for p, c in zip(prompts, captions)]
    kwargs = {"padding": "longest", "return_tensors": "pt"}
    if instruct:
        # The Q-Former reads only the instruction, never the caption it should produce.
        qformer = processor.qformer_tokenizer(list(prompts), **kwargs)
    batch = processor(images=images, text=texts, **kwargs)
    if instruct:
        batch["qformer_input_ids"] = qformer["input_ids"]
        batch["qformer_attention_mask"] = qformer["attention_mask"]
    wanted = model.config.num_query_tokens
    n_image_tokens = (batch["input_ids"] == model.config.image_token_id).sum(dim=1)
    if not torch.all(n_image_tokens == wanted):
        raise ImageTokenError(f"rows carry {n_image_tokens.tolist()} <image> tokens, the model needs {wanted}")
    if captions is not None:
        labels = batch["input_ids"].clone()
        labels[batch["attention_mask"] == 0] = -100
        for row, prompt in enumerate(prompts):
            n_prompt = len(tok(prompt)["input_ids"])  # <s> plus the prompt's own tokens
            labels[row, : wanted + n_prompt] = -100
        batch["labels"] = labels
    return batch


def build_demo_blip2(
    out_dir: str | Path,
    tokenizer,
    instruct: bool = False,
    image_size: int = 64,
    patch_size: int = 8,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_query_tokens: int = 8,
    max_positions: int = 256,
    seed: int = 0,
) -> Path:
    """A small random BLIP-2 / InstructBLIP with the real architecture, saved to ``out_dir``.

    It stands in for the multi-billion-parameter checkpoints in the demo; notebook 03 trains it on
    the demo data because zero-shot captions from random weights would mean nothing.
    ``tokenizer`` is the language model's tokenizer (see ``causal_tokenizer``); the processor adds
    the ``<image>`` token to it.
    """
    torch.manual_seed(seed)
    out_dir = Path(out_dir)
    image_processor = BlipImageProcessor(size={"height": image_size, "width": image_size})
    model_cls, processor_cls = _classes(instruct)
    if instruct:
        processor = processor_cls(image_processor, tokenizer, qformer_tokenizer=tokenizer,
                                  num_query_tokens=num_query_tokens)
    else:
        processor = processor_cls(image_processor, tokenizer, num_query_tokens=num_query_tokens)
    vocab = len(processor.tokenizer)
    # initializer_range: BLIP-2's vision default (1e-10) makes random patch embeddings ~0, so a random
    # model would be image-blind for a reason unrelated to the placeholders.
    vision = dict(initializer_range=0.02, hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                  num_hidden_layers=num_layers,
                  num_attention_heads=num_heads, image_size=image_size, patch_size=patch_size)
    qformer = dict(hidden_size=hidden_size, intermediate_size=2 * hidden_size, num_hidden_layers=num_layers,
                   num_attention_heads=num_heads, encoder_hidden_size=hidden_size, cross_attention_frequency=1,
                   vocab_size=vocab, pad_token_id=tokenizer.pad_token_id)
    text = OPTConfig(vocab_size=vocab, hidden_size=hidden_size, word_embed_proj_dim=hidden_size,
                     ffn_dim=2 * hidden_size, num_hidden_layers=num_layers, num_attention_heads=num_heads,
                     max_position_embeddings=max_positions, bos_token_id=tokenizer.bos_token_id,
                     eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    config_cls = InstructBlipConfig if instruct else Blip2Config
    config = config_cls(vision_config=vision, qformer_config=qformer, text_config=text.to_dict(),
                        num_query_tokens=num_query_tokens, image_token_index=image_token_id(processor))
    model = model_cls(config)
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir


def blip2_loss(model, batch) -> torch.Tensor:
    """Caption loss for ``training.fit``: the model's own causal LM loss on :func:`blip2_inputs` labels."""
    return model(**batch).loss


@torch.no_grad()
def blip2_generate(model, processor, images, **generate_kwargs) -> list[str]:
    """Captions for a batch of images (prompt-only inputs with the image placeholders checked)."""
    batch = blip2_inputs(model, processor, images).to(model.device)
    out = model.generate(**batch, **generate_kwargs)
    # Decoder-only language models return the prompt too; keep what comes after it.
    out = out[:, batch["input_ids"].shape[1]:]
    return [t.strip() for t in processor.tokenizer.batch_decode(out, skip_special_tokens=True)]


def make_blip2_collate(model, processor):
    """Items of ``captioning_data.CaptionImageCacheDataset`` -> checked :func:`blip2_inputs` with labels.

    ``model`` is only read for its config (query count, placeholder id, BLIP-2 or InstructBLIP).
    """

    def collate(items: list[dict]) -> dict:
        images = [it["image"].numpy() for it in items]
        return dict(blip2_inputs(model, processor, images, captions=[it["caption"] for it in items]))

    return collate
