"""The two attention modules of seed 004's captioner (:mod:`medcap_utils.models.lstm_captioner`; notebook
07_explainable_lstm_captioner): the semantic encoder's GRU with self-attention pooling, whose weights are the
paper's "word importance" (Fig. 3), and the decoder's additive visual attention (Show-Attend-Tell), whose weights
are the attention maps over image regions.
"""
from __future__ import annotations

import torch
from torch import nn


class SemanticEncoder(nn.Module):
    """GRU + additive self-attention pooling + multi-label head (paper: "self-attention GRU")."""

    def __init__(self, embed_dim: int, hidden: int, attention_dim: int, num_labels: int):
        super().__init__()
        self.gru = nn.GRU(embed_dim, hidden, batch_first=True)
        self.score = nn.Sequential(nn.Linear(hidden, attention_dim), nn.Tanh(),
                                   nn.Linear(attention_dim, 1, bias=False))
        self.classifier = nn.Linear(hidden, num_labels)

    def states(self, embedded: torch.Tensor, hidden=None):
        """GRU states (B, T, H), their attention scores (B, T) and the last hidden state."""
        out, hidden = self.gru(embedded, hidden)
        return out, self.score(out).squeeze(-1), hidden

    @staticmethod
    def pool(states: torch.Tensor, scores: torch.Tensor, mask: torch.Tensor):
        """Attention-weighted sum over the positions where ``mask`` is True -> (B, H), weights (B, T)."""
        weights = scores.masked_fill(~mask, float("-inf")).softmax(-1)
        return torch.einsum("bt,bth->bh", weights, states), weights

    @staticmethod
    def causal_pool(states: torch.Tensor, scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """For every step t the pooling over positions <= t: (B, T, H). Same numbers as calling
        :meth:`pool` on each prefix, in one batched softmax."""
        T = scores.shape[1]
        causal = torch.ones(T, T, dtype=torch.bool, device=scores.device).tril()
        allowed = causal[None] & mask[:, None, :]  # (B, t, s)
        allowed = allowed | ~allowed.any(-1, keepdim=True)  # padded rows: avoid all -inf
        weights = scores[:, None, :].masked_fill(~allowed, float("-inf")).softmax(-1)
        return torch.einsum("bts,bsh->bth", weights, states)


class AdditiveAttention(nn.Module):
    """Bahdanau / Show-Attend-Tell attention: e_i = w^T tanh(W_v v_i + W_h h), alpha = softmax(e)."""

    def __init__(self, feature_dim: int, hidden_dim: int, attention_dim: int):
        super().__init__()
        self.feat = nn.Linear(feature_dim, attention_dim)
        self.hid = nn.Linear(hidden_dim, attention_dim)
        self.out = nn.Linear(attention_dim, 1, bias=False)

    def forward(self, feats_proj: torch.Tensor, feats: torch.Tensor, h: torch.Tensor):
        """``feats_proj`` = self.feat(feats), computed once per image. Returns context (B, C), alpha (B, N)."""
        alpha = self.out(torch.tanh(feats_proj + self.hid(h)[:, None, :])).squeeze(-1).softmax(-1)
        return torch.einsum("bn,bnc->bc", alpha, feats), alpha
