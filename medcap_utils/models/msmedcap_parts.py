"""MSMedCap's parts (seed 003, notebook 06_msmedcap): the pre-trained encoders, language model and tokenizers,
each loaded by hub id or local directory, and the trainable Q-Former branch (Eq. 3-4) with its two starting points,
BERT-base (as BLIP-2 and the authors' code) or BLIP-2's pre-trained Q-Former. :mod:`medcap_utils.models.msmedcap`
assembles them into the model.
"""
from __future__ import annotations

import torch
from torch import nn
from transformers import Blip2QFormerConfig, Blip2QFormerModel
from transformers.models.blip_2.modeling_blip_2 import Blip2TextEmbeddings

CLIP_ID = "openai/clip-vit-large-patch14"  # paper: "a ViT image encoder pre-trained with CLIP"
SAM_ID = "facebook/sam-vit-base"  # authors' code names "facebook/sam-vit-big", which is not a hub id
OPT_ID = "facebook/opt-2.7b"  # paper and code
BLIP2_ID = "Salesforce/blip2-opt-2.7b"  # authors' code: BLIP-2's EVA-CLIP-g tower and its pre-trained Q-Former
QFORMER_INIT_ID = "bert-base-uncased"  # authors' code and BLIP-2 start the Q-Former from BERT-base


def _quiet_from_pretrained(cls, path_or_id, **kwargs):
    """``cls.from_pretrained`` without the load report (loading a vision tower from a full CLIP/SAM
    checkpoint lists every unused text/mask-decoder weight)."""
    from transformers.utils import logging

    from medcap_utils.hub import from_pretrained as hub_from_pretrained  # missing/corrupt: one clear error

    old = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        return hub_from_pretrained(cls, path_or_id, **kwargs)
    finally:
        logging.set_verbosity(old)


def load_clip_vision(path_or_id=CLIP_ID, dtype=None):
    """The CLIP-style vision tower: ``CLIPVisionModel`` from a CLIP checkpoint (the paper), or the EVA-CLIP-g
    tower of a BLIP-2 checkpoint such as ``Salesforce/blip2-opt-2.7b`` (the authors' code)."""
    from transformers import AutoConfig, CLIPVisionModel

    if _quiet_from_pretrained(AutoConfig, path_or_id).model_type == "blip-2":
        return load_blip2_parts(path_or_id, dtype)["vision"]
    return _quiet_from_pretrained(CLIPVisionModel, path_or_id, dtype=dtype)


def load_blip2_parts(path_or_id=BLIP2_ID, dtype=None) -> dict:
    """From a BLIP-2 checkpoint: its vision tower, and the Q-Former, query tokens and language
    projection that :func:`init_branch_from_blip2` copies into a CLIP branch (Table 1's "G" CLIP
    Q-Former, which the paper loads from BLIP-2). ``Blip2VisionModel.from_pretrained`` on the full
    checkpoint would silently leave the weights random, hence the detour through the whole model."""
    from transformers import Blip2ForConditionalGeneration

    full = _quiet_from_pretrained(Blip2ForConditionalGeneration, path_or_id, dtype=dtype)
    return {"vision": full.vision_model, "qformer": full.qformer.state_dict(),
            "query_tokens": full.query_tokens.detach().clone(), "to_lm": full.language_projection.state_dict()}


def load_sam_vision(path_or_id=SAM_ID, dtype=None):
    """SAM's ViT image encoder plus neck (``SamVisionModel``) from a full ``SamModel`` checkpoint or its own."""
    from transformers import SamVisionModel

    return _quiet_from_pretrained(SamVisionModel, path_or_id, dtype=dtype)


def load_language_model(path_or_id=OPT_ID, dtype=None):
    from transformers import AutoModelForCausalLM

    return _quiet_from_pretrained(AutoModelForCausalLM, path_or_id, dtype=dtype)


def load_tokenizer(path_or_id):
    from transformers import AutoTokenizer

    from medcap_utils.hub import from_pretrained

    return from_pretrained(AutoTokenizer, path_or_id)


class QFormerBranch(nn.Module):
    """Learnable queries + a Q-Former over one encoder + the linear layer into the LM (Eq. 3-4).

    The stage-1 parts (text embeddings, ITC projections, ITM head, ITG language head, temperature) live
    here too so a pre-trained branch carries them; stage 2 uses only queries, Q-Former and ``to_lm``.
    """

    def __init__(self, qformer_config: Blip2QFormerConfig, num_query_tokens: int, lm_hidden: int, embed_dim: int):
        super().__init__()
        h = qformer_config.hidden_size
        self.query_tokens = nn.Parameter(torch.randn(1, num_query_tokens, h) * qformer_config.initializer_range)
        self.qformer = Blip2QFormerModel(qformer_config)
        self.to_lm = nn.Linear(h, lm_hidden)
        self.text_embeddings = Blip2TextEmbeddings(qformer_config)
        self.vision_proj = nn.Linear(h, embed_dim)
        self.text_proj = nn.Linear(h, embed_dim)
        self.itm_head = nn.Linear(h, 2)
        self.lm_head = nn.Linear(h, qformer_config.vocab_size)
        self.temp = nn.Parameter(torch.tensor(0.07))  # BLIP-2's initial ITC temperature

    @property
    def num_query_tokens(self) -> int:
        return self.query_tokens.shape[1]

    def queries(self, features: torch.Tensor) -> torch.Tensor:
        """Q-Former outputs of the queries alone, ``(B, M, hidden)``; cross-attention reads ``features``."""
        q = self.query_tokens.expand(features.shape[0], -1, -1)
        return self.qformer(query_embeds=q, encoder_hidden_states=features).last_hidden_state

    def stage2_parameters(self) -> list[nn.Parameter]:
        """What stage 2 trains (Fig. 2): queries, Q-Former, linear projection."""
        return [self.query_tokens, *self.qformer.parameters(), *self.to_lm.parameters()]


def init_branch_from_bert(branch: QFormerBranch, path_or_id=QFORMER_INIT_ID) -> list[str]:
    """Start a branch from BERT weights as BLIP-2 and the authors' code do: self-attention and the
    feed-forward layers (copied into both the text and the query feed-forward), embeddings and their
    LayerNorm; cross-attention stays random. Returns the Q-Former keys that got no BERT weight."""
    from transformers import BertModel

    bert = _quiet_from_pretrained(BertModel, path_or_id).state_dict()
    target = branch.qformer.state_dict()
    mapped = {"layernorm.weight": "embeddings.LayerNorm.weight", "layernorm.bias": "embeddings.LayerNorm.bias"}
    for key in target:
        if not key.startswith("encoder.layer.") or ".crossattention." in key:
            continue
        src = key.replace(".attention.attention.", ".attention.self.")
        src = src.replace(".intermediate_query.", ".intermediate.").replace(".output_query.", ".output.")
        mapped[key] = src
    loaded = {k: bert[s] for k, s in mapped.items() if s in bert and bert[s].shape == target[k].shape}
    branch.qformer.load_state_dict(loaded, strict=False)
    with torch.no_grad():
        words = bert["embeddings.word_embeddings.weight"]
        n = min(words.shape[0], branch.text_embeddings.word_embeddings.weight.shape[0])
        branch.text_embeddings.word_embeddings.weight[:n] = words[:n]
        pos = bert["embeddings.position_embeddings.weight"]
        m = min(pos.shape[0], branch.text_embeddings.position_embeddings.weight.shape[0])
        branch.text_embeddings.position_embeddings.weight[:m] = pos[:m]
    return sorted(set(target) - set(loaded))


def init_branch_from_blip2(branch: QFormerBranch, parts: dict) -> list[str]:
    """Copy BLIP-2's pre-trained Q-Former, queries and language projection (``load_blip2_parts``) into a
    branch; returns the branch's Q-Former keys the checkpoint lacks (the hub's captioning checkpoints
    carry no text feed-forward weights, which only stage 1 uses)."""
    result = branch.qformer.load_state_dict(parts["qformer"], strict=False)
    with torch.no_grad():
        branch.query_tokens.copy_(parts["query_tokens"])
    branch.to_lm.load_state_dict(parts["to_lm"])
    return sorted(result.missing_keys)
