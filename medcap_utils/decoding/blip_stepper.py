"""One decoder step of BLIP's text decoder over all beams of a batch, with caches that are never copied
(the fast decoder of :mod:`medcap_utils.decoding.blip_fast`, notebooks 02-04).

The vision encoder's output is turned into cross-attention keys/values once per image and shared by its beams
(beams are the query rows of one matrix product); the self-attention keys/values live in a preallocated buffer
where each beam writes its own slot, and a beam reorder only rewrites a small table of which slot holds each
position of each beam's history. ``static``/``compile`` switch to a fixed-shape step for ``torch.compile`` and
CUDA graphs.
"""
from __future__ import annotations

import math

import torch


class BlipStepper:
    """One decoder step of a BLIP text decoder over ``rows = images * beams`` sequences.

    Reuses the model's own linear layers, layer norms and feed-forward blocks (same arithmetic as HF);
    only the attention core and the caches are new. ``step(tokens, pos)`` returns float32 logits.
    """

    def __init__(self, model, image_embeds: torch.Tensor, beams: int, max_length: int, static: bool = False,
                 compile: bool = False, compile_mode: str | None = None):
        td = model.text_decoder
        self.embeddings, self.layers, self.head = td.bert.embeddings, td.bert.encoder.layer, td.cls
        first = self.layers[0].attention.self
        self.heads, self.head_dim = first.num_attention_heads, first.attention_head_size
        self.images, self.beams, self.rows = image_embeds.shape[0], beams, image_embeds.shape[0] * beams
        self.max_length, self.static = max_length, static or compile
        device = image_embeds.device
        self.cross_k, self.cross_v = [], []
        self.load_images(image_embeds)
        kv_dtype = self.cross_k[0].dtype
        # self-attention keys/values: each beam writes its own slot, never moved (see reorder)
        shape = (len(self.layers), self.images, self.heads, max_length, beams, self.head_dim)
        self.self_k = torch.zeros(shape, dtype=kv_dtype, device=device)
        self.self_v = torch.zeros(shape, dtype=kv_dtype, device=device)
        # slot[image, beam, t]: whose slot holds position t of this beam's history (its own until reordered)
        self.own = torch.arange(beams, device=device).expand(self.images, beams)
        self.slot = torch.empty(self.images, beams, max_length, dtype=torch.long, device=device)
        self.reset()
        self.positions = torch.arange(max_length, device=device)
        self._step = self._static_step if self.static else self._exact_step
        if compile:
            self._step = torch.compile(self._static_step, mode=compile_mode, dynamic=False)

    def load_images(self, image_embeds: torch.Tensor) -> None:
        """Cross-attention keys/values once per image, ``(images, heads, patches, head_dim)`` per layer; a later
        batch of the same shape is copied into the same tensors (CUDA graphs read them there)."""
        for i, layer in enumerate(self.layers):
            ca = layer.crossattention.self
            k, v = self._heads(ca.key(image_embeds)), self._heads(ca.value(image_embeds))
            if len(self.cross_k) <= i:  # contiguous: matmul would otherwise copy the heads' view every step
                self.cross_k.append(k.contiguous())
                self.cross_v.append(v.contiguous())
            else:
                self.cross_k[i].copy_(k)
                self.cross_v[i].copy_(v)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], x.shape[1], self.heads, self.head_dim).transpose(1, 2)

    def step(self, tokens: torch.Tensor, pos: int) -> torch.Tensor:
        """Logits ``(rows, vocab)`` (float32) for ``tokens`` ``(rows,)`` at position ``pos``."""
        if self.static:
            return self._step(tokens, torch.tensor(pos, device=tokens.device))
        return self._step(tokens, pos)

    def reset(self) -> None:
        """A new batch: every beam's history is its own slot again."""
        self.slot.copy_(self.own[:, :, None].expand_as(self.slot))

    def reorder(self, parents: torch.Tensor, upto: int) -> None:
        """Beam search picked new parents: beam j of each image now continues beam ``parents[image, j]``
        (positions ``< upto``). Only the small slot table moves; the cached keys/values stay where they
        were written (HF copies the whole cache of every layer here, on every step)."""
        self.slot[:, :, :upto] = torch.take_along_dim(self.slot[:, :, :upto], parents[..., None], dim=1)

    def _decoder(self, tokens, pos, attend) -> torch.Tensor:
        position_ids = pos.view(1, 1) if torch.is_tensor(pos) else torch.full((1, 1), pos, device=tokens.device)
        h = self.embeddings(input_ids=tokens[:, None], position_ids=position_ids)
        for i, layer in enumerate(self.layers):
            sa = layer.attention.self
            q, k, v = (self._heads(lin(h)) for lin in (sa.query, sa.key, sa.value))
            ctx = attend(i, q, k, v, pos)
            h = layer.attention.output(self._merge(ctx), h)
            ca = layer.crossattention.self
            # all beams of an image are query rows against that image's keys: (images, heads, beams, dim)
            q = ca.query(h).view(self.images, self.beams, self.heads, self.head_dim).transpose(1, 2)
            scores = torch.matmul(q, self.cross_k[i].transpose(-1, -2)) / math.sqrt(self.head_dim)
            ctx = torch.matmul(scores.softmax(dim=-1), self.cross_v[i])  # (images, heads, beams, dim)
            ctx = ctx.transpose(1, 2).reshape(self.rows, 1, self.heads * self.head_dim)
            h = layer.crossattention.output(ctx, h)
            h = layer.feed_forward_chunk(h)
        return self.head(h)[:, -1].float()

    def _merge(self, ctx: torch.Tensor) -> torch.Tensor:
        return ctx.permute(0, 2, 1, 3).reshape(self.rows, 1, self.heads * self.head_dim)

    def _by_image(self, x: torch.Tensor) -> torch.Tensor:
        """(rows, heads, 1, dim) -> (images, heads, beams, dim): an image's beams as query rows."""
        return x.view(self.images, self.beams, self.heads, self.head_dim).transpose(1, 2)

    def _self_attention(self, i: int, q: torch.Tensor, length: int, future=None) -> torch.Tensor:
        """Attention of every beam over its own history, read through ``slot``: the scores are taken against
        all beams' keys of the image at once (one product, ``beams`` times the needed dot products, each
        key read once), then each beam keeps, per position, the column of the slot its history uses; the
        values are summed with the same selection. Returns (rows, heads, 1, dim)."""
        images, heads, beams, dim = self.images, self.heads, self.beams, self.head_dim
        keys = self.self_k[i, :, :, :length].reshape(images, heads, length * beams, dim)
        values = self.self_v[i, :, :, :length].reshape(images, heads, length * beams, dim)
        scores = torch.matmul(self._by_image(q), keys.transpose(-1, -2)) / math.sqrt(dim)
        scores = scores.view(images, heads, beams, length, beams)
        if beams > 1:
            pick = self.slot[:, None, :, :length, None].expand(images, heads, beams, length, 1)
            scores = torch.gather(scores, -1, pick)
        scores = scores.squeeze(-1)
        if future is not None:
            scores = scores.masked_fill(future, float("-inf"))
        probs = scores.softmax(dim=-1)
        if beams > 1:  # zero weight on the slots a beam does not read
            probs = probs.new_zeros(images, heads, beams, length, beams).scatter_(-1, pick, probs.unsqueeze(-1))
        ctx = torch.matmul(probs.reshape(images, heads, beams, length * beams), values)
        return ctx.transpose(1, 2).reshape(self.rows, heads, 1, dim)

    def _exact_step(self, tokens, pos: int):
        def attend(i, q, k, v, pos):
            self.self_k[i, :, :, pos] = self._by_image(k)
            self.self_v[i, :, :, pos] = self._by_image(v)
            return self._self_attention(i, q, pos + 1)

        return self._decoder(tokens, pos, attend)

    def _static_step(self, tokens, pos: torch.Tensor):
        def attend(i, q, k, v, pos):
            self.self_k[i].index_copy_(2, pos.view(1), self._by_image(k)[:, :, None])
            self.self_v[i].index_copy_(2, pos.view(1), self._by_image(v)[:, :, None])
            return self._self_attention(i, q, self.max_length, future=(self.positions > pos).view(1, 1, 1, -1))

        return self._decoder(tokens, pos, attend)
