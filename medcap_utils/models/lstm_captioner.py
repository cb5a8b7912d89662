"""The explainable attention-LSTM captioner of seed 004 (Beddiar, Oussalah & Seppänen, 2022).

Used by notebook ``07_explainable_lstm_captioner``. Three parts, as in the paper's Fig. 1:

* **Visual encoder** -- a transformers ``ResNetModel`` (ImageNet ``microsoft/resnet-50`` for real
  runs; a small ``ResNetConfig`` saved with ``save_pretrained`` in the demo, loaded through the same
  :func:`load_visual_encoder`). Its last convolutional feature map (B, C, h, w), not the pooled
  vector, is flattened into ``h*w`` region vectors ("convolutional layer activation instead of
  flatten layer activation").
* **Semantic encoder** -- a GRU over caption word embeddings with additive self-attention pooling,
  trained as a multi-label classifier (caption -> concept CUIs, or caption -> its vocabulary words).
  Its attention weights are the paper's "word importance" (Fig. 3).
* **Decoder** -- an LSTM with Show-Attend-Tell additive visual attention. At step t its input is
  [embedding of the previous word; attended visual context; semantic feature], where the semantic
  feature is the self-attention pooling of the GRU states over the words read *so far*. With
  ``deep_output`` (Show-Attend-Tell's eq. 7) the word is predicted from the LSTM state plus the
  attended context and the previous word.

Interpretation (the paper is silent on it): at test time there is no ground-truth caption, so the
semantic encoder cannot read one. We let it read the decoder's own prefix (teacher-forced ground
truth prefix in training, generated prefix at inference), causally: the feature at step t only sees
words < t, so nothing leaks from the target. The multi-label loss is applied to the pooling over the
complete ground-truth caption, and word importance for a generated caption is the same pooling over
the generated words -- "the most important words in the generated caption" (paper, Sec. III).

Decoding: greedy and beam search (``beam_size=1`` gives the greedy sequence); both return the
per-step attention over the ``h*w`` regions for the explanation figures.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import ResNetConfig, ResNetModel

from medcap_utils.data.cache import normalize_uint8
from medcap_utils.models.lstm_attention import AdditiveAttention, SemanticEncoder

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MAX_GRID = 32  # largest attention grid side with position embeddings (ResNet-50 at 1024 px)


def pixels(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> ImageNet-normalised float (B, 3, H, W) on the tensor's device (notebook 07)."""
    return normalize_uint8(images_uint8, IMAGENET_MEAN, IMAGENET_STD)


def load_visual_encoder(name_or_path: str = "microsoft/resnet-50") -> ResNetModel:
    """A transformers ResNet by hub id (real runs) or by a ``save_pretrained`` directory (demo)."""
    from medcap_utils.hub import from_pretrained  # a missing or corrupt checkpoint: one clear error

    return from_pretrained(ResNetModel, name_or_path)


def small_resnet_config(width: int = 16, depths=(1, 1)) -> ResNetConfig:
    """A two-stage basic-block ResNet for the demo: stride 4 stem + one stride-2 stage = 1/8 of the
    input, so a 64 px image gives an 8x8 attention grid (ResNet-50 at 224 px gives 7x7)."""
    return ResNetConfig(embedding_size=width, hidden_sizes=[width * (2 ** i) for i in range(len(depths))],
                        depths=list(depths), layer_type="basic", downsample_in_first_stage=False)


@dataclass
class LSTMCaptionerConfig:
    """Sizes of the captioner; saved beside the weights (notebook 07)."""

    vocab_size: int
    num_labels: int  # classes of the semantic encoder's multi-label head
    pad_id: int = 0
    start_id: int = 1
    end_id: int = 2
    embed_dim: int = 256
    semantic_dim: int = 256  # GRU hidden size
    attention_dim: int = 256
    decoder_dim: int = 512
    dropout: float = 0.5
    freeze_encoder: bool = True  # paper: ImageNet ResNet-50 used by transfer learning
    # LSTM start state: "mean" = from the mean region feature (Show-Attend-Tell); "none" = learned
    # constant, so every bit of image information has to pass through the visual attention.
    init_state: str = "mean"
    # Learned row + column embeddings added to the region features (not in the paper): the attended
    # context then says *where* it looked, which words like "left"/"right" need.
    position_embedding: bool = False
    # Whether the attention *scores* see the position embeddings too (True) or only the image
    # content (False; the context vector still carries the position). With False the decoder cannot
    # learn a fixed "look at cell k" pointer: to find out *where* something is, it has to find it.
    position_in_scores: bool = True
    # Average-pool the last feature map by this factor before attention (1 = off): fewer, coarser
    # cells for the same small receptive field (the demo's cost is in the attention over cells).
    grid_pool: int = 1
    # Show-Attend-Tell's deep output layer (their eq. 7): the word is predicted from the LSTM state
    # *plus* the attended context and the previous word, not from the state alone. The attended
    # context then reaches the word's logits in one linear step, so what the attention picks is what
    # the word is read from.
    deep_output: bool = False
    encoder_config: dict = field(default_factory=dict)  # ResNetConfig.to_dict() of the visual encoder


class LSTMCaptioner(nn.Module):
    """ResNet regions + self-attention GRU semantics -> attention LSTM decoder (notebook 07)."""

    def __init__(self, config: LSTMCaptionerConfig, encoder: ResNetModel | None = None):
        super().__init__()
        self.config = config
        if encoder is None:
            encoder = ResNetModel(ResNetConfig.from_dict(config.encoder_config))
        config.encoder_config = encoder.config.to_dict()
        self.encoder = encoder
        if config.freeze_encoder:
            for p in self.encoder.parameters():
                p.requires_grad = False
        C = encoder.config.hidden_sizes[-1]
        E, S, D, A = config.embed_dim, config.semantic_dim, config.decoder_dim, config.attention_dim
        # One embedding table: the paper computes "word embeddings for the captions" once and both
        # the semantic encoder and the decoder read the same words.
        self.embed = nn.Embedding(config.vocab_size, E, padding_idx=config.pad_id)
        self.semantic = SemanticEncoder(E, S, A, config.num_labels)
        self.attention = AdditiveAttention(C, D, A)
        self.row_emb = nn.Embedding(MAX_GRID, C) if config.position_embedding else None
        self.col_emb = nn.Embedding(MAX_GRID, C) if config.position_embedding else None
        self.init_h = nn.Linear(C, D)
        self.init_c = nn.Linear(C, D)
        self.gate = nn.Linear(D, C)  # Show-Attend-Tell's gating scalar beta, one per channel
        self.lstm = nn.LSTMCell(E + C + S, D)
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(D, config.vocab_size)
        self.context_out = nn.Linear(C, D) if config.deep_output else None
        self.word_out = nn.Linear(E, D) if config.deep_output else None

    # ---- encoder ------------------------------------------------------------------------------
    def encode_image(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Region features (B, h*w, C) of the last convolutional stage and the grid size (h, w)."""
        feats, _, grid = self.encode(pixel_values)
        return feats, grid

    def encode(self, pixel_values: torch.Tensor):
        """Region features (B, N, C) that the context averages (with position embeddings), their
        projection for the attention scores (B, N, A), computed once per image, and the grid (h, w)."""
        if self.config.freeze_encoder:
            self.encoder.eval()  # frozen BatchNorm statistics stay ImageNet's
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.config.freeze_encoder):
            fmap = self.encoder(pixel_values).last_hidden_state
        if self.config.grid_pool > 1:
            fmap = F.avg_pool2d(fmap, self.config.grid_pool)
        B, C, h, w = fmap.shape
        content = fmap.flatten(2).transpose(1, 2)
        feats = content
        if self.row_emb is not None:
            rows = torch.arange(h, device=fmap.device).repeat_interleave(w)
            cols = torch.arange(w, device=fmap.device).repeat(h)
            feats = content + self.row_emb(rows) + self.col_emb(cols)
        keys = self.attention.feat(feats if self.config.position_in_scores else content)
        return feats, keys, (h, w)

    def feature_maps(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Activations at every depth (stem, then each stage) for the feature-map figure."""
        return self.encoder(pixel_values, output_hidden_states=True).hidden_states

    def _init_state(self, feats: torch.Tensor):
        mean = feats.mean(1) if self.config.init_state == "mean" else feats.new_zeros(feats.shape[0], feats.shape[2])
        return torch.tanh(self.init_h(mean)), torch.tanh(self.init_c(mean))

    def _step(self, feats, feats_proj, word_emb, semantic, h, c, alpha=None):
        """One decoder step. ``alpha`` (B, N), when given, replaces the model's own attention (the
        counterfactual probe of notebook 07: what would the word be if the model looked *there*)."""
        if alpha is None:
            context, alpha = self.attention(feats_proj, feats, h)
        else:
            context = torch.einsum("bn,bnc->bc", alpha, feats)
        context = torch.sigmoid(self.gate(h)) * context
        h, c = self.lstm(torch.cat([word_emb, context, semantic], -1), (h, c))
        out = h
        if self.context_out is not None:
            out = h + self.context_out(context) + self.word_out(word_emb)
        return self.head(self.drop(out)), h, c, alpha

    # ---- training -----------------------------------------------------------------------------
    def forward(self, pixel_values: torch.Tensor, input_ids: torch.Tensor,
                attention_override: dict[int, torch.Tensor] | None = None) -> dict:
        """Teacher forcing. ``input_ids`` (B, T) = ``<start> w1 .. wn <end> <pad>..``; step t reads
        id t and predicts id t+1. Returns logits (B, T-1, V), alphas (B, T-1, N) over the (h, w)
        ``grid``, label logits (B, L) and the semantic word weights (B, T-1). ``attention_override``
        {step: (B, N) weights} makes
        those steps attend where it says instead of where the model would."""
        attention_override = attention_override or {}
        feats, feats_proj, grid = self.encode(pixel_values)
        inputs = input_ids[:, :-1]
        in_mask = (inputs != self.config.pad_id) & (inputs != self.config.end_id)
        emb = self.embed(inputs)
        states, scores, _ = self.semantic.states(emb)
        semantic_steps = self.semantic.causal_pool(states, scores, in_mask)
        pooled, word_weights = self.semantic.pool(states, scores, in_mask)
        h, c = self._init_state(feats)
        logits, alphas = [], []
        for t in range(inputs.shape[1]):
            step_logits, h, c, alpha = self._step(feats, feats_proj, emb[:, t], semantic_steps[:, t], h, c,
                                                  attention_override.get(t))
            logits.append(step_logits)
            alphas.append(alpha)
        return {"logits": torch.stack(logits, 1), "alphas": torch.stack(alphas, 1), "grid": grid,
                "label_logits": self.semantic.classifier(pooled), "word_weights": word_weights}

    def loss(self, pixel_values, input_ids, labels=None, alpha_c: float = 1.0,
             semantic_weight: float = 1.0) -> dict:
        """Cross-entropy over caption tokens + Show-Attend-Tell's doubly stochastic attention term
        ``alpha_c * mean_i (1 - sum_t alpha_ti)^2`` + ``semantic_weight`` * multi-label BCE."""
        out = self(pixel_values, input_ids)
        targets = input_ids[:, 1:]
        valid = targets != self.config.pad_id
        ce = F.cross_entropy(out["logits"].reshape(-1, out["logits"].shape[-1]), targets.reshape(-1),
                             ignore_index=self.config.pad_id)
        att_sum = (out["alphas"] * valid[..., None]).sum(1)
        reg = ((1.0 - att_sum) ** 2).mean()
        total = ce + alpha_c * reg
        bce = torch.zeros((), device=ce.device)
        if labels is not None and labels.shape[-1] > 0:
            bce = F.binary_cross_entropy_with_logits(out["label_logits"], labels.float())
            total = total + semantic_weight * bce
        return {"loss": total, "ce": ce, "attention_reg": reg, "semantic_bce": bce}

    # ---- decoding -----------------------------------------------------------------------------
    @torch.no_grad()
    def greedy(self, pixel_values: torch.Tensor, max_len: int = 40) -> dict:
        """Batched greedy decoding. Returns ``ids`` (B, L) without ``<start>`` (padded after
        ``<end>``), ``alphas`` (B, L, N) and ``grid`` (h, w)."""
        feats, feats_proj, grid = self.encode(pixel_values)
        B = feats.shape[0]
        h, c = self._init_state(feats)
        word = torch.full((B,), self.config.start_id, dtype=torch.long, device=feats.device)
        gru_h, states, scores = None, [], []
        ids, alphas = [], []
        done = torch.zeros(B, dtype=torch.bool, device=feats.device)
        for _ in range(max_len):
            semantic, gru_h = self._semantic_step(word, gru_h, states, scores)
            logits, h, c, alpha = self._step(feats, feats_proj, self.embed(word), semantic, h, c)
            word = logits.argmax(-1)
            word = torch.where(done, torch.full_like(word, self.config.pad_id), word)
            ids.append(word)
            alphas.append(alpha)
            done |= word == self.config.end_id
            if bool(done.all()):
                break
        return {"ids": torch.stack(ids, 1), "alphas": torch.stack(alphas, 1), "grid": grid}

    def _semantic_step(self, word, gru_h, states: list, scores: list):
        """Advance the GRU by one word and pool over every state so far (same as ``causal_pool``)."""
        out, score, gru_h = self.semantic.states(self.embed(word)[:, None], gru_h)
        states.append(out[:, 0])
        scores.append(score[:, 0])
        weights = torch.stack(scores, 1).softmax(-1)
        return torch.einsum("bt,bth->bh", weights, torch.stack(states, 1)), gru_h

    @torch.no_grad()
    def beam_search(self, pixel_values: torch.Tensor, beam_size: int = 3, max_len: int = 40,
                    length_penalty: float = 0.0) -> dict:
        """Beam search, one image at a time. Hypotheses are ranked by total log-probability divided
        by ``length ** length_penalty`` (0 = plain sum, as Show-Attend-Tell). Same outputs as
        :meth:`greedy`; ``beam_size=1`` reproduces greedy decoding."""
        feats_all, proj_all, grid = self.encode(pixel_values)
        results, att_results = [], []
        for b in range(feats_all.shape[0]):
            seq, att = self._beam_one(feats_all[b:b + 1], proj_all[b:b + 1], beam_size, max_len, length_penalty)
            results.append(seq)
            att_results.append(att)
        L = max(len(s) for s in results)
        N = feats_all.shape[1]
        ids = torch.full((len(results), L), self.config.pad_id, dtype=torch.long, device=feats_all.device)
        alphas = torch.zeros(len(results), L, N, device=feats_all.device)
        for i, (seq, att) in enumerate(zip(results, att_results)):
            ids[i, : len(seq)] = torch.tensor(seq, device=feats_all.device)
            alphas[i, : len(seq)] = att
        return {"ids": ids, "alphas": alphas, "grid": grid}

    def _beam_one(self, feats, feats_proj, k, max_len, length_penalty):
        V = self.config.vocab_size
        h, c = self._init_state(feats)
        word = torch.tensor([self.config.start_id], device=feats.device)
        seqs = [[]]
        atts = [[]]
        score = torch.zeros(1, device=feats.device)
        gru_h, states, scores = None, [], []
        finished = []  # (rank score, seq, att)
        for t in range(max_len):
            n = word.shape[0]
            semantic, gru_h = self._semantic_step(word, gru_h, states, scores)
            logits, h, c, alpha = self._step(feats.expand(n, -1, -1), feats_proj.expand(n, -1, -1),
                                             self.embed(word), semantic, h, c)
            total = (score[:, None] + logits.log_softmax(-1)).view(-1)
            top, flat = total.topk(min(k, total.numel()))
            origin, token = flat // V, flat % V
            keep = []
            for s, o, w in zip(top.tolist(), origin.tolist(), token.tolist()):
                seq, att = seqs[o] + [w], atts[o] + [alpha[o]]
                if w == self.config.end_id or t == max_len - 1:
                    finished.append((s / (len(seq) ** length_penalty), seq, att))
                else:
                    keep.append((s, o, w, seq, att))
            # Stop once k hypotheses are finished and no live one can still beat them (log-probs only
            # fall, so with length_penalty 0 the best finished score is final).
            if not keep or len(finished) >= k:
                break
            idx = torch.tensor([o for _, o, _, _, _ in keep], device=feats.device)
            score = torch.tensor([s for s, *_ in keep], device=feats.device)
            word = torch.tensor([w for _, _, w, _, _ in keep], device=feats.device)
            seqs = [sq for *_, sq, _ in keep]
            atts = [at for *_, at in keep]
            h, c, gru_h = h[idx], c[idx], gru_h[:, idx]
            states[:] = [s_[idx] for s_ in states]
            scores[:] = [s_[idx] for s_ in scores]
        best = max(finished, key=lambda x: x[0])
        return best[1], torch.stack(best[2])

    @torch.no_grad()
    def word_importance(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Self-attention weights of the semantic encoder over a caption's words (B, T): the paper's
        word importance (Fig. 3). ``token_ids`` are word ids without ``<start>``, padded with
        ``<pad>``; ``<end>`` is ignored."""
        mask = (token_ids != self.config.pad_id) & (token_ids != self.config.end_id)
        states, scores, _ = self.semantic.states(self.embed(token_ids))
        return self.semantic.pool(states, scores, mask | ~mask.any(-1, keepdim=True))[1]

    @torch.no_grad()
    def predict_labels(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Multi-label probabilities (B, L) of the semantic classifier for word ids."""
        mask = (token_ids != self.config.pad_id) & (token_ids != self.config.end_id)
        states, scores, _ = self.semantic.states(self.embed(token_ids))
        pooled, _ = self.semantic.pool(states, scores, mask | ~mask.any(-1, keepdim=True))
        return self.semantic.classifier(pooled).sigmoid()

    # ---- persistence --------------------------------------------------------------------------
    def save(self, directory: str | Path, extra: dict | None = None) -> Path:
        """``config.json`` (sizes + encoder config + ``extra``, e.g. the vocabulary), weights and
        ``checksums.sha256``, built under a temporary name: the folder is complete or absent (a kill or a
        full disk keeps the previous one)."""
        from medcap_utils.atomic import atomic_directory
        from medcap_utils.model_files import write_checksums

        directory = Path(directory)
        payload = {"config": dataclasses.asdict(self.config), "extra": extra or {}}
        with atomic_directory(directory) as tmp:
            (tmp / "config.json").write_text(json.dumps(payload))
            torch.save(self.state_dict(), tmp / "model.pt")
            write_checksums(tmp)
        return directory

    @classmethod
    def load(cls, directory: str | Path, map_location="cpu") -> tuple["LSTMCaptioner", dict]:
        """Inverse of :meth:`save`; returns the model (eval mode) and the ``extra`` dict. The folder is
        verified first (:func:`medcap_utils.model_files.verify_model_dir`): a truncated or changed file is a
        ``CorruptModelError`` naming it."""
        from medcap_utils.model_files import verify_model_dir

        directory = verify_model_dir(Path(directory))
        payload = json.loads((directory / "config.json").read_text())
        model = cls(LSTMCaptionerConfig(**payload["config"]))
        model.load_state_dict(torch.load(directory / "model.pt", map_location=map_location))
        return model.eval(), payload["extra"]
