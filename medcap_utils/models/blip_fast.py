"""The fast BLIP training path: same loss and gradients as the plain Hugging Face forward, less work.

- :func:`enable_sdpa` swaps the eager attention of BLIP's ViT and text decoder (transformers 5.x BLIP has
  no SDPA/flash path) for ``torch.nn.functional.scaled_dot_product_attention``; masks are then built the
  SDPA way (``None`` when nothing is padded, so the decoder's self-attention runs as ``is_causal``).
- :func:`linear_cross_entropy` computes the label-smoothed LM loss over the 30,524-word vocabulary in row
  chunks and writes the gradients during the forward pass, so the ``(tokens, vocab)`` float32 logits and
  their gradient are never held for the whole batch.
- :class:`LengthGroupedSampler` orders each epoch so that a batch holds captions of similar length
  (every image once per epoch, batches in random order), so batches are padded to less.
- :func:`make_fast_blip_loss` is a drop-in ``loss_fn`` for :func:`medcap_utils.training.fit`.

Used by ``finetune_blip(fast=True)`` (notebook 02 / ``python -m medcap_utils.training.blip --fast``)
and by ``python -m medcap_utils.runner.bench train``; ``tests/test_fast_train.py`` checks it against the plain path.
"""
from __future__ import annotations

import contextlib
import types

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Sampler

from medcap_utils.models.blip import pixel_values


def _vision_sdpa(self, hidden_states, **kwargs):
    b, t, c = hidden_states.shape
    qkv = self.qkv(hidden_states).reshape(b, t, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
    ctx = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], scale=self.scale,
                                         dropout_p=self.dropout.p if self.training else 0.0)
    return self.projection(ctx.transpose(1, 2).reshape(b, t, c)), None


def _cache_keyword(attention_cls) -> str:
    """The name BLIP's text attention gives its key/value cache: ``past_key_values`` up to transformers
    5.23, ``cache`` from 5.24 (the old name still works there through a deprecation shim, to 5.40)."""
    import inspect

    return "cache" if "cache" in inspect.signature(attention_cls.forward).parameters else "past_key_values"


def _text_sdpa(self, hidden_states, attention_mask=None, encoder_hidden_states=None, past_key_values=None, cache=None,
               **kwargs):
    q_len = hidden_states.shape[1]
    cache = cache if cache is not None else past_key_values
    if cache is not None:  # HF's cache (generation): the original code, with an additive mask
        if attention_mask is None and q_len > 1 and encoder_hidden_states is None:
            self_cache = getattr(cache, "self_attention_cache", cache)
            k_len = self_cache.get_seq_length(self.layer_idx) + q_len  # this layer's cache, before its update
            attention_mask = torch.ones(q_len, k_len, dtype=torch.bool, device=hidden_states.device).tril(k_len - q_len)
        if attention_mask is not None and attention_mask.dtype == torch.bool:
            attention_mask = torch.zeros(attention_mask.shape, dtype=hidden_states.dtype, device=hidden_states.device
                                         ).masked_fill(~attention_mask, torch.finfo(hidden_states.dtype).min)
        return type(self).forward(self, hidden_states, attention_mask=attention_mask,
                                  encoder_hidden_states=encoder_hidden_states,
                                  **{_cache_keyword(type(self)): cache}, **kwargs)
    cross = encoder_hidden_states is not None
    source = encoder_hidden_states if cross else hidden_states

    def heads(x):
        return x.view(x.shape[0], x.shape[1], -1, self.attention_head_size).transpose(1, 2)

    q, k, v = heads(self.query(hidden_states)), heads(self.key(source)), heads(self.value(source))
    mask = None if cross else attention_mask  # BLIP ignores the image mask (no padded image tokens)
    if mask is not None and mask.dtype != torch.bool:
        mask = mask.to(q.dtype)
    ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=not cross and mask is None and q_len > 1,
                                         dropout_p=self.dropout.p if self.training else 0.0)
    return ctx.transpose(1, 2).reshape(hidden_states.shape[0], q_len, -1), None


def enable_sdpa(model) -> None:
    """Patch every BLIP attention of ``model`` (in place, reversible with :func:`disable_sdpa`) to SDPA.

    Attention maps are no longer returned (notebook 03's cross-attention gallery needs the eager model).
    """
    from transformers.models.blip.modeling_blip import BlipAttention
    from transformers.models.blip.modeling_blip_text import BlipTextSelfAttention

    for module in model.vision_model.modules():
        if isinstance(module, BlipAttention):
            module.forward = types.MethodType(_vision_sdpa, module)
    for module in model.text_decoder.modules():
        if isinstance(module, BlipTextSelfAttention):
            module.forward = types.MethodType(_text_sdpa, module)
    model.text_decoder.config._attn_implementation = "sdpa"  # masks as SDPA wants them (None / bool)


def disable_sdpa(model) -> None:
    """Undo :func:`enable_sdpa`."""
    for module in model.modules():
        if getattr(module.__dict__.get("forward"), "__func__", None) in (_vision_sdpa, _text_sdpa):
            del module.forward
    model.text_decoder.config._attn_implementation = "eager"


@contextlib.contextmanager
def sdpa_attention(model):
    """``with sdpa_attention(model): ...`` trains with SDPA and gives back the eager model afterwards."""
    enable_sdpa(model)
    try:
        yield model
    finally:
        disable_sdpa(model)


@contextlib.contextmanager
def no_cudnn_attention():
    """SDPA without the cuDNN backend while training (flash / memory-efficient kernels instead).

    Measured on an H100 (torch 2.11): cuDNN's attention backward spent ~4 ms of CPU per call building a
    graph for each new caption length, more than the GPU work of the step."""
    previous = torch.backends.cuda.cudnn_sdp_enabled()
    torch.backends.cuda.enable_cudnn_sdp(False)
    try:
        yield
    finally:
        torch.backends.cuda.enable_cudnn_sdp(previous)


class _LinearCrossEntropy(torch.autograd.Function):
    """mean label-smoothed CE of ``hidden @ weight.T + bias`` against ``labels`` (-100 ignored)."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, labels, smoothing: float, chunk: int, dtype):
        n, vocab = hidden.shape[0], weight.shape[0]
        valid = labels != -100
        count = valid.sum().clamp(min=1).to(torch.float32)
        w, b = weight.to(dtype), bias.to(dtype)
        grads = any(ctx.needs_input_grad[:3])
        g_hidden = torch.empty_like(hidden) if grads else None
        g_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if grads else None
        g_bias = torch.zeros(vocab, dtype=torch.float32, device=weight.device) if grads else None
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for s in range(0, n, chunk):
            h = hidden[s:s + chunk].to(dtype)
            z = F.linear(h, w, b).float()
            y, keep = labels[s:s + chunk].clamp(min=0)[:, None], valid[s:s + chunk].to(torch.float32)
            lse = z.logsumexp(dim=-1)
            rows = (1 - smoothing) * (lse - z.gather(1, y)[:, 0]) + smoothing * (lse - z.mean(dim=-1))
            total += (rows * keep).sum()
            if grads:  # d loss / d z = softmax - (1 - eps) * onehot - eps / V, averaged over kept rows
                g = (z - lse[:, None]).exp_().sub_(smoothing / vocab)
                g.scatter_add_(1, y, torch.full_like(z[:, :1], smoothing - 1))
                g = (g * (keep / count)[:, None]).to(dtype)
                g_hidden[s:s + chunk] = (g @ w).to(hidden.dtype)
                g_weight += (g.t() @ h).float()
                g_bias += g.float().sum(dim=0)
        ctx.save_for_backward(g_hidden, g_weight, g_bias)
        ctx.dtypes = (weight.dtype, bias.dtype)
        return total / count

    @staticmethod
    def backward(ctx, grad):
        g_hidden, g_weight, g_bias = ctx.saved_tensors
        return (g_hidden * grad, (g_weight * grad).to(ctx.dtypes[0]), (g_bias * grad).to(ctx.dtypes[1]),
                None, None, None, None)


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, labels: torch.Tensor,
                         label_smoothing: float = 0.0, chunk_rows: int = 2048) -> torch.Tensor:
    """``F.cross_entropy(F.linear(hidden, weight, bias), labels, label_smoothing=..., ignore_index=-100)``
    without materialising all logits; matrix products in the autocast dtype when autocast is on."""
    device = hidden.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else hidden.dtype
    with torch.autocast(device, enabled=False):
        return _LinearCrossEntropy.apply(hidden.reshape(-1, hidden.shape[-1]), weight, bias, labels.reshape(-1),
                                         float(label_smoothing), int(chunk_rows), dtype)


def make_fast_blip_loss(processor, chunk_rows: int = 2048, right_padded: bool = True,
                        device_images: torch.Tensor | None = None):
    """``loss_fn(model, batch)`` equal to :func:`medcap_utils.models.blip.make_blip_loss`'s, computed as
    vision encoder -> text decoder -> chunked cross-entropy (call :func:`enable_sdpa` for SDPA attention).

    With ``right_padded`` (how ``caption_targets`` pads) no text mask is passed: with causal attention a
    real token never sees the padding after it and padding carries label -100, so loss and gradients
    are unchanged while the decoder can use a fused causal kernel. ``device_images``: the whole uint8 image
    cache on the GPU; a batch without ``images`` takes its pixels from there by ``rows`` (no host copy).
    """
    from medcap_utils.models.blip import _needs_interpolation

    def fast_blip_loss(model, batch) -> torch.Tensor:
        model = getattr(model, "module", model)  # DDP
        images = batch["images"] if "images" in batch else device_images[batch["rows"]]
        pv = pixel_values(images, processor)
        image_embeds = model.vision_model(pixel_values=pv,
                                          interpolate_pos_encoding=_needs_interpolation(model, pv)).last_hidden_state
        td = model.text_decoder
        hidden = td.bert(input_ids=batch["input_ids"], attention_mask=None if right_padded else batch["attention_mask"],
                         encoder_hidden_states=image_embeds, is_decoder=True, use_cache=False).last_hidden_state
        head = td.cls.predictions
        hidden = head.transform(hidden[:, :-1])
        return linear_cross_entropy(hidden, head.decoder.weight, head.decoder.bias, batch["labels"][:, 1:],
                                    td.label_smoothing, chunk_rows)

    return fast_blip_loss


class LengthGroupedSampler(Sampler[int]):
    """Indices ordered so that each run of ``batch_size`` holds captions of similar length.

    Per epoch (seeded by ``seed`` and the epoch only, like the loop's shuffle sampler): a random
    permutation is cut into pools of ``batch_size * pool_batches``, each pool is sorted by length and
    cut into batches, and the full batches are shuffled (a short last batch goes last). Every index
    appears exactly once per epoch; only which captions share a batch changes.
    """

    def __init__(self, lengths, batch_size: int, seed: int = 0, pool_batches: int = 64):
        self.lengths = torch.as_tensor(lengths)
        self.batch_size, self.seed, self.pool, self.epoch = batch_size, seed, pool_batches, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(len(self.lengths), generator=g)
        size = self.batch_size * self.pool
        batches = []
        for pool in order.split(size):
            pool = pool[torch.argsort(self.lengths[pool], descending=True, stable=True)]
            batches += list(pool.split(self.batch_size))
        full = [b for b in batches if len(b) == self.batch_size]
        short = [b for b in batches if len(b) < self.batch_size]
        full = [full[i] for i in torch.randperm(len(full), generator=g).tolist()]
        return iter(torch.cat(full + short).tolist() if full or short else [])


def caption_lengths(tokenizer, captions, max_length: int = 200) -> list[int]:
    """Token counts of captions as the collate function will see them (for :class:`LengthGroupedSampler`)."""
    ids = tokenizer(list(captions), truncation=True, max_length=max_length)["input_ids"]
    return [len(x) for x in ids]


def fused_adamw(params, lr: float, weight_decay: float = 0.0, betas=(0.9, 0.999), eps: float = 1e-8):
    """AdamW with the fused CUDA kernel when the parameters are on a GPU (one launch for all tensors)."""
    params = [p for p in params if p.requires_grad]
    fused = bool(params) and params[0].is_cuda
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=betas, eps=eps, fused=fused or None)


def images_to_device(cache, device, max_share: float = 0.3) -> torch.Tensor | None:
    """The whole uint8 image cache as one tensor on ``device`` when it takes at most ``max_share`` of the
    GPU's memory (ROCOv2 train at 224 px: 10.5 GB), else None (batches then bring their pixels)."""
    images = cache.images
    if torch.device(device).type != "cuda" or images.nbytes > max_share * torch.cuda.get_device_properties(
            device).total_memory:
        return None
    return torch.from_numpy(np.ascontiguousarray(images)).to(device)


def compile_blip(model, **compile_kwargs):
    """``nn.Module.compile`` (in place, so ``save_pretrained`` keys stay) on the vision encoder and the text decoder.

    Images have one size, so the vision graph is static; caption batches change length every step, so the text
    decoder is compiled once with dynamic shapes instead of recompiling per length."""
    model.vision_model.compile(**compile_kwargs)
    model.text_decoder.bert.compile(**{"dynamic": True, **compile_kwargs})
    return model
