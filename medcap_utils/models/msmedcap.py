"""MSMedCap (seed 003): frozen CLIP-style and SAM image encoders, one Q-Former per encoder, a frozen OPT.

Paper Eq. 1-6: ``v_CLIP = f_CLIP(x)``, ``v_SAM = f_SAM(x)``; each Q-Former turns learnable queries plus
cross-attention over its encoder's features into ``M`` vectors, a linear layer maps them to the LM's
width, and the LM reads ``Concat(v~_CLIP, v~_SAM, v_text)``. Only the Q-Formers, their queries and the
linear projections train (Fig. 2); the encoders and the LM are frozen. Variants (Table 1): ``blip2``
(CLIP branch only), ``sam_blip2`` (SAM branch only), ``msmedcap`` (both).

Every part loads by hub id or local directory (:mod:`.msmedcap_parts`, which also holds the Q-Former branch;
:func:`assemble_msmedcap` puts them together); :meth:`MSMedCap.save_pretrained`
writes the parts in their own Hugging Face format plus the Q-Former weights, and :func:`load_msmedcap`
reads such a directory back through the same part loaders. The demo builds tiny random parts with
:func:`build_demo_parts`. Used by notebook 06 (with ``medcap_utils.training.msmedcap_pretrain`` for stage 1).

Where the authors' code (AHandsomePython/MSMedCap) pins down what the paper leaves open, it is followed:
SAM features are ``SamModel.get_image_embeddings`` output ``(256, 64, 64)`` read as 256 tokens of
64*64 = 4096 values (``sam_tokens="channels"``; ``"spatial"`` gives 4096 tokens of 256 values instead);
CLIP features are the vision tower's tokens after a LayerNorm (their ``ln_vision``).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn
from transformers import Blip2QFormerConfig

from .msmedcap_parts import (
    CLIP_ID,
    OPT_ID,
    SAM_ID,
    QFormerBranch,
    load_clip_vision,
    load_language_model,
    load_sam_vision,
    load_tokenizer,
)

OPENAI_CLIP_MEAN, OPENAI_CLIP_STD = (0.4815, 0.4578, 0.4082), (0.2686, 0.2613, 0.2758)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # SamProcessor's
VARIANTS = {"blip2": ("clip",), "sam_blip2": ("sam",), "msmedcap": ("clip", "sam")}
PART_DIRS = {"clip": "clip_vision", "sam": "sam_vision", "lm": "language_model", "tokenizer": "tokenizer",
             "qformer_tokenizer": "qformer_tokenizer"}

DEFAULT_SETTINGS = dict(
    num_query_tokens=32,  # BLIP-2 / authors' code
    qformer=dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                 cross_attention_frequency=2, max_position_embeddings=512),  # BERT-base, cross-attn every 2nd layer
    embed_dim=256,  # ITC projection width (BLIP-2)
    sam_tokens="channels",  # authors' code: 256 channel tokens x (64*64) values
    clip_image_size=None, sam_image_size=None,  # None = the encoder config's image_size
    prompt="a photo of",  # LAVIS BLIP-2 captioning prompt, used by the authors' generation notebook
    max_text_tokens=64,
)


#: ``generate``'s defaults when a caller gives none: the authors' ``SamBlip.generate`` (min length and length
#: penalty at the library defaults here; the recipe states the code's 10 and 1.2).
AUTHORS_DECODING = dict(num_beams=15, max_new_tokens=50, min_new_tokens=0, repetition_penalty=9.0,
                        length_penalty=1.0, do_sample=False)


class MSMedCap(nn.Module):
    """Frozen encoders + frozen causal LM + one trainable :class:`QFormerBranch` per used encoder."""

    def __init__(self, language_model, tokenizer, clip_vision=None, sam_vision=None, qformer_tokenizer=None,
                 settings: dict | None = None, sources: dict | None = None):
        super().__init__()
        self.settings = {**DEFAULT_SETTINGS, **(settings or {})}
        self.settings["qformer"] = {**DEFAULT_SETTINGS["qformer"], **self.settings.get("qformer", {})}
        self.sources = dict(sources or {})  # where each frozen part came from (hub id or path)
        self.copy_frozen_on_save = True  # False: save only Q-Formers and refer to the sources (real runs)
        self.language_model, self.tokenizer, self.qformer_tokenizer = language_model, tokenizer, qformer_tokenizer
        self.encoders = nn.ModuleDict()
        if clip_vision is not None:
            self.encoders["clip"] = clip_vision
        if sam_vision is not None:
            self.encoders["sam"] = sam_vision
        if not self.encoders:
            raise ValueError("MSMedCap needs at least one image encoder")
        lm_hidden = language_model.get_input_embeddings().embedding_dim
        vocab = len(qformer_tokenizer) if qformer_tokenizer is not None else 2
        pad = qformer_tokenizer.pad_token_id if qformer_tokenizer is not None else 0
        self.branches = nn.ModuleDict()
        for name in self.encoder_order:
            qcfg = Blip2QFormerConfig(**self.settings["qformer"], encoder_hidden_size=self.feature_width(name),
                                      use_qformer_text_input=True, vocab_size=vocab, pad_token_id=pad)
            self.branches[name] = QFormerBranch(qcfg, self.settings["num_query_tokens"], lm_hidden,
                                                self.settings["embed_dim"])
        self.freeze_frozen_parts()

    # ---- structure -------------------------------------------------------------------------------
    @property
    def encoder_order(self) -> list[str]:
        """Eq. 5 order: CLIP queries first, then SAM queries."""
        return [n for n in ("clip", "sam") if n in self.encoders]

    @property
    def variant(self) -> str:
        return next(k for k, v in VARIANTS.items() if list(v) == self.encoder_order)

    @property
    def device(self) -> torch.device:
        return next(self.language_model.parameters()).device

    def feature_width(self, name: str) -> int:
        cfg = self.encoders[name].config
        if name == "clip":
            return cfg.hidden_size
        side = self.image_size("sam") // cfg.patch_size
        return side * side if self.settings["sam_tokens"] == "channels" else cfg.output_channels

    def image_size(self, name: str) -> int:
        size = self.settings.get(f"{name}_image_size") or self.encoders[name].config.image_size
        return int(size[0] if isinstance(size, (list, tuple)) else size)

    def freeze_frozen_parts(self) -> None:
        """Encoders and LM: no gradients and always in eval mode (Fig. 2)."""
        for module in [*self.encoders.values(), self.language_model]:
            module.requires_grad_(False)
            module.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        for module in [*self.encoders.values(), self.language_model]:
            module.eval()
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Stage 2's parameters: each branch's queries, Q-Former and linear projection."""
        return [p for b in self.branches.values() for p in b.stage2_parameters()]

    # ---- encoders --------------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, images_uint8: torch.Tensor) -> dict[str, torch.Tensor]:
        """uint8 ``(B, H, W, 3)`` -> ``{name: (B, N, C)}`` frozen features, each encoder at its own
        resolution and normalisation (resized on the device)."""
        from medcap_utils.data.cache import normalize_uint8

        out = {}
        for name in self.encoder_order:
            mean, std = (OPENAI_CLIP_MEAN, OPENAI_CLIP_STD) if name == "clip" else (IMAGENET_MEAN, IMAGENET_STD)
            x = normalize_uint8(images_uint8.to(self.device), mean, std)
            size = self.image_size(name)
            if x.shape[-1] != size or x.shape[-2] != size:
                x = nn.functional.interpolate(x, size=(size, size), mode="bicubic", align_corners=False)
            encoder = self.encoders[name]
            x = x.to(next(encoder.parameters()).dtype)
            if name == "clip":
                hidden = encoder(pixel_values=x, interpolate_pos_encoding=size != encoder.config.image_size)
                tokens = hidden.last_hidden_state
                # CLIPVisionModel normalises only its pooled token; BLIP-2's tower already ends in ln_vision
                out[name] = encoder.post_layernorm(tokens) if encoder.config.model_type == "clip_vision_model" \
                    else tokens
            else:
                maps = encoder(pixel_values=x).last_hidden_state  # (B, C, h, w) after SAM's neck
                flat = maps.flatten(2)  # (B, C, h*w)
                out[name] = flat if self.settings["sam_tokens"] == "channels" else flat.transpose(1, 2)
        return out

    def query_embeddings(self, images_uint8: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{name: (B, M, lm_hidden)}``: each branch's query outputs projected into the LM."""
        feats = self.encode(images_uint8)
        return {n: self.branches[n].to_lm(self.branches[n].queries(feats[n].float())) for n in self.encoder_order}

    # ---- language model inputs -------------------------------------------------------------------
    def lm_inputs(self, images_uint8, input_ids, attention_mask, labels=None) -> dict:
        """Eq. 5: ``inputs_embeds = [CLIP queries, SAM queries, text]``; query positions get mask 1 and
        label -100. ``segments`` says which positions hold what (tests check the order)."""
        queries = self.query_embeddings(images_uint8)
        text = self.language_model.get_input_embeddings()(input_ids)
        parts, segments, start = [], {}, 0
        for name in self.encoder_order:
            q = queries[name].to(text.dtype)
            parts.append(q)
            segments[name] = slice(start, start + q.shape[1])
            start += q.shape[1]
        segments["text"] = slice(start, start + text.shape[1])
        n_q = start
        b = input_ids.shape[0]
        ones = torch.ones(b, n_q, dtype=attention_mask.dtype, device=attention_mask.device)
        out = {"inputs_embeds": torch.cat([*parts, text], dim=1),
               "attention_mask": torch.cat([ones, attention_mask], dim=1), "segments": segments}
        if labels is not None:
            ignore = torch.full((b, n_q), -100, dtype=labels.dtype, device=labels.device)
            out["labels"] = torch.cat([ignore, labels], dim=1)
        return out

    def forward(self, images, input_ids, attention_mask, labels=None):
        inputs = self.lm_inputs(images, input_ids, attention_mask, labels)
        inputs.pop("segments")
        return self.language_model(**inputs)

    def caption_batch(self, captions, prompt: str | None = None) -> dict[str, torch.Tensor]:
        """LM token ids and labels for ``<bos> prompt caption <eos>``: labels -100 on the bos token, the
        prompt and padding (only caption tokens and the end token are learned)."""
        prompt = self.settings["prompt"] if prompt is None else prompt
        tok = self.tokenizer
        texts = [f"{prompt} {c}".strip() + tok.eos_token for c in captions]
        enc = tok(texts, padding="longest", truncation=True, max_length=self.settings["max_text_tokens"],
                  return_tensors="pt")
        labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        n_prompt = len(tok(prompt)["input_ids"])  # bos + prompt tokens (OPT-style tokenizers prepend bos)
        labels[:, :n_prompt] = -100
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": labels}

    # ---- generation ------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, images_uint8, prompt: str | None = None, **generate_kwargs) -> list[str]:
        """Captions for uint8 images. ``generate_kwargs`` go to the language model's ``generate`` over
        :data:`AUTHORS_DECODING` (beam 15, max length 50, repetition penalty 9; their code also sets min length
        10 and length penalty 1.2, which the recipe's ``decoding:`` section passes). Notebook 06 calls it
        through :func:`medcap_utils.decoding.caption.caption` with the recipe's ``DecodingConfig``."""
        prompt = self.settings["prompt"] if prompt is None else prompt
        was_training = self.training
        self.eval()
        images_uint8 = torch.as_tensor(images_uint8)
        enc = self.tokenizer([prompt] * len(images_uint8), return_tensors="pt").to(self.device)
        inputs = self.lm_inputs(images_uint8, enc["input_ids"], enc["attention_mask"])
        tok = self.tokenizer
        out = self.language_model.generate(
            inputs_embeds=inputs["inputs_embeds"], attention_mask=inputs["attention_mask"],
            eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
            **{**AUTHORS_DECODING, **generate_kwargs})
        self.train(was_training)
        # with inputs_embeds only, a decoder-only model returns just the new tokens
        return [t.strip() for t in tok.batch_decode(out, skip_special_tokens=True)]

    # ---- saving ----------------------------------------------------------------------------------
    def save_pretrained(self, out_dir) -> Path:
        """``msmedcap.json`` + ``qformers.safetensors`` + (unless ``copy_frozen_on_save`` is False) the
        frozen parts and tokenizers in their own formats; :func:`load_msmedcap` reads it back."""
        from medcap_utils.atomic import atomic_directory
        from medcap_utils.model_files import write_checksums

        with atomic_directory(out_dir) as tmp:  # complete (checksums last) or absent; a kill keeps the old one
            self._save_into(tmp)
            write_checksums(tmp)
        return Path(out_dir)

    def _save_into(self, out: Path) -> None:
        from safetensors.torch import save_file

        parts = {"clip": self.encoders["clip"] if "clip" in self.encoders else None,
                 "sam": self.encoders["sam"] if "sam" in self.encoders else None, "lm": self.language_model,
                 "tokenizer": self.tokenizer, "qformer_tokenizer": self.qformer_tokenizer}
        sources = dict(self.sources)
        for key, part in parts.items():
            if part is None:
                continue
            if self.copy_frozen_on_save or key in ("tokenizer", "qformer_tokenizer") or key not in sources:
                part.save_pretrained(out / PART_DIRS[key])
                sources[key] = PART_DIRS[key]
        state = {k: v.detach().contiguous().cpu() for k, v in self.branches.state_dict().items()}
        save_file(state, str(out / "qformers.safetensors"))
        meta = {"variant": self.variant, "settings": self.settings, "sources": sources}
        (out / "msmedcap.json").write_text(json.dumps(meta, indent=2))


def assemble_msmedcap(variant: str = "msmedcap", clip=CLIP_ID, sam=SAM_ID, lm=OPT_ID, tokenizer=None,
                      qformer_tokenizer=None, settings: dict | None = None, dtype=None) -> MSMedCap:
    """An MSMedCap whose frozen parts load by hub id or local path; branches are freshly initialised.

    ``tokenizer``: the LM's (default: loaded from ``lm``); ``qformer_tokenizer``: the Q-Former's text
    tokenizer for stage 1 (default: the offline uncased BERT vocabulary with ``[DEC]``, as BLIP-2).
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {list(VARIANTS)}")
    used = VARIANTS[variant]
    clip_model = load_clip_vision(clip, dtype) if "clip" in used else None
    sam_model = load_sam_vision(sam, dtype) if "sam" in used else None
    language_model = load_language_model(lm, dtype)
    tok = load_tokenizer(tokenizer or lm) if tokenizer is None or isinstance(tokenizer, (str, Path)) else tokenizer
    if qformer_tokenizer is None:
        from medcap_utils.models.blip import blip_tokenizer

        qformer_tokenizer = blip_tokenizer("bert-uncased")
    elif isinstance(qformer_tokenizer, (str, Path)):
        qformer_tokenizer = load_tokenizer(qformer_tokenizer)
    sources = {"clip": str(clip), "sam": str(sam), "lm": str(lm)}
    sources = {k: v for k, v in sources.items() if k == "lm" or k in used}
    return MSMedCap(language_model, tok, clip_model, sam_model, qformer_tokenizer, settings, sources)


def load_msmedcap(path, dtype=None) -> MSMedCap:
    """Read a :meth:`MSMedCap.save_pretrained` directory (frozen parts from its subfolders, or from the
    recorded hub ids when they were not copied)."""
    from safetensors.torch import load_file

    from medcap_utils.model_files import verify_model_dir

    root = verify_model_dir(Path(path))  # a truncated or changed file: CorruptModelError naming it
    meta = json.loads((root / "msmedcap.json").read_text())
    src = {k: (root / v if (root / v).exists() else v) for k, v in meta["sources"].items()}
    model = assemble_msmedcap(meta["variant"], clip=src.get("clip"), sam=src.get("sam"), lm=src["lm"],
                              tokenizer=src.get("tokenizer"), qformer_tokenizer=src.get("qformer_tokenizer"),
                              settings=meta["settings"], dtype=dtype)
    model.branches.load_state_dict(load_file(str(root / "qformers.safetensors")))
    model.sources = {k: str(v) for k, v in meta["sources"].items()}
    return model.eval()


def build_demo_parts(out_dir, captions, image_size: int = 64, patch_size: int = 8, hidden: int = 64,
                     layers: int = 2, heads: int = 4, sam_channels: int = 32, lm_hidden: int = 64,
                     lm_layers: int = 2, seed: int = 0) -> dict[str, Path]:
    """Tiny random CLIP vision tower, SAM image encoder and OPT plus offline tokenizers, each saved with
    ``save_pretrained`` to ``out_dir/<part>`` so :func:`assemble_msmedcap` loads them by path exactly
    as it loads hub ids. The LM tokenizer is a WordPiece trained on ``captions`` (``causal_tokenizer``),
    the Q-Former's a BERT-style WordPiece with ``[DEC]`` (``blip.blip_tokenizer``)."""
    from transformers import (
        CLIPVisionConfig,
        CLIPVisionModel,
        OPTConfig,
        OPTForCausalLM,
        SamVisionConfig,
        SamVisionModel,
    )

    from medcap_utils.models.blip import blip_tokenizer
    from medcap_utils.models.causal_tokenizer import train_causal_tokenizer

    out = Path(out_dir)
    captions = list(captions)
    torch.manual_seed(seed)
    tok = train_causal_tokenizer(captions)
    qtok = blip_tokenizer("wordpiece", captions, vocab_size=1000)
    clip = CLIPVisionModel(CLIPVisionConfig(image_size=image_size, patch_size=patch_size, hidden_size=hidden,
                                            intermediate_size=2 * hidden, num_hidden_layers=layers,
                                            num_attention_heads=heads))
    # SAM's default initializer_range (1e-10) is for loading weights; random demo weights need a real scale
    sam = SamVisionModel(SamVisionConfig(image_size=image_size, patch_size=patch_size, hidden_size=hidden,
                                         num_hidden_layers=layers, num_attention_heads=heads, mlp_dim=2 * hidden,
                                         output_channels=sam_channels, window_size=4, global_attn_indexes=[layers - 1],
                                         num_pos_feats=hidden // 2, initializer_range=0.02))
    lm = OPTForCausalLM(OPTConfig(vocab_size=len(tok), hidden_size=lm_hidden, word_embed_proj_dim=lm_hidden,
                                  ffn_dim=2 * lm_hidden, num_hidden_layers=lm_layers, num_attention_heads=heads,
                                  max_position_embeddings=256, bos_token_id=tok.bos_token_id,
                                  eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id))
    paths = {}
    for key, part in [("clip", clip), ("sam", sam), ("lm", lm), ("tokenizer", tok), ("qformer_tokenizer", qtok)]:
        paths[key] = out / PART_DIRS[key]
        part.save_pretrained(paths[key])
    return paths


def demo_settings(num_query_tokens: int = 8, hidden: int = 64, layers: int = 2, heads: int = 4,
                  embed_dim: int = 32, prompt: str = "a photo of", max_text_tokens: int = 64) -> dict:
    """Q-Former sizes for the demo profile (the real ones are :data:`DEFAULT_SETTINGS`)."""
    return dict(num_query_tokens=num_query_tokens, embed_dim=embed_dim, prompt=prompt,
                max_text_tokens=max_text_tokens,
                qformer=dict(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                             intermediate_size=2 * hidden, cross_attention_frequency=1, max_position_embeddings=128))
