"""Whether a model fits the device, from its config alone (issue 12; notebooks 02, 03, 05 and 06 and
:func:`medcap_utils.training.blip.finetune_blip` ask before loading anything).

:func:`fits_device` and :func:`plan_batch` estimate from the model's *config* alone (parameters counted on the
``meta`` device, so no weights are read), before anything is loaded, so a model that cannot fit is skipped with a
message instead of failing with an out-of-memory error hours into a run. Device capabilities and precision are
:mod:`medcap_utils.device`'s.

Memory estimate (bytes), every constant with its source:

* inference: ``params x bytes(dtype) x 1.2``; the 20% for activations, KV cache and buffers is the rule of
  thumb of EleutherAI's "Transformer Math 101" that Accelerate's model-size estimator quotes.
* training: ``trainable x 16`` (fp32 weights 4 + fp32 gradients 4 + AdamW's two fp32 moments 8; the same
  "16 bytes/param" as Transformer Math 101 minus its mixed-precision copy) ``+ frozen x 4`` ``+ all x 2`` under
  mixed precision (autocast keeps a 16-bit copy of each weight alive for the backward pass), plus activations
  (:func:`activation_bytes_per_image`).
* usable device memory: ``0.9 x (min(total - 0.5 GiB, free))``: 0.5 GiB for the CUDA context and cuBLAS
  workspaces (what a fresh torch process shows in nvidia-smi, 0.3-0.5 GiB with lazy module loading), 10% for the
  caching allocator's fragmentation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .device import (
    ALLOCATOR_MARGIN,
    CUDA_CONTEXT_BYTES,
    GIB,
    DeviceInfo,
    device_info,
    inference_dtype,
    resolve_mixed_precision,
)

INFERENCE_OVERHEAD = 0.20  # EleutherAI "Transformer Math 101", quoted by Accelerate's model-size estimator
#: smallest micro-batch worth keeping rather than turning gradient checkpointing on. Judgement, from the H100
#: anchors in ../shared/reference.md (BLIP-base: 36 img/s at batch 4 fp32, 550 at batch 64 bf16: small batches
#: starve a GPU), against checkpointing's cost of one extra forward (~1/3 of a training step's FLOPs).
MIN_EFFICIENT_MICRO_BATCH = 8


# ------------------------------------------------------------------------------------------ model sizes
def model_config(config_or_id: Any):
    """A transformers config from a config object, a hub id or a local directory (no weights are read)."""
    if isinstance(config_or_id, (str, Path)):
        from transformers import AutoConfig

        from medcap_utils.hub import from_pretrained  # a missing id or folder: one clear error

        return from_pretrained(AutoConfig, str(config_or_id))
    return config_or_id


_MODEL_CLASS_BY_TYPE = {"blip": "BlipForConditionalGeneration", "blip-2": "Blip2ForConditionalGeneration",
                        "instructblip": "InstructBlipForConditionalGeneration"}


_COUNTS: dict[str, int] = {}  # config JSON -> parameter count (notebooks ask about the same models repeatedly)


def parameter_count(config_or_id: Any) -> int:
    """Exact parameter count of the model a config describes (tied weights counted once), from the config."""
    import transformers

    config = model_config(config_or_id)
    key = config.to_json_string(use_diff=False)
    if key not in _COUNTS:
        arch = (getattr(config, "architectures", None) or [None])[0] or _MODEL_CLASS_BY_TYPE.get(config.model_type)
        with torch.device("meta"):  # shapes only: a 7B model "builds" in a fraction of a second, in no memory
            model = getattr(transformers, arch)(config) if arch else transformers.AutoModel.from_config(config)
        _COUNTS[key] = sum(p.numel() for p in model.parameters())  # parameters() yields tied weights once
    return _COUNTS[key]


def model_name(config_or_id: Any, name: str | None = None) -> str:
    if name:
        return name
    if isinstance(config_or_id, (str, Path)):
        return str(config_or_id)
    return getattr(config_or_id, "_name_or_path", "") or type(config_or_id).__name__.replace("Config", "")


def _dtype_bytes(dtype: torch.dtype | str) -> int:
    dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    return torch.empty((), dtype=dtype).element_size()


# ---------------------------------------------------------------------------------------- activations
def _layer_bytes(s: int, h: int, heads: int, ffn: int, kv_tokens: int = 0, kv_hidden: int = 0) -> float:
    """Activation bytes one transformer layer keeps for backward, per sequence, under 16-bit autocast.

    Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large Transformer Models", eq. 1) count
    ``s*h*34 + 5*a*s^2`` for 16-bit activations and a 4h MLP. Changes for HF eager attention under autocast:
    the MLP term is written for any width (``3*s*h + 4*s*ffn``); LayerNorm runs in fp32 and the residual
    stream is fp32 (+4 s*h); softmax runs in fp32 and its output is cast again for the next matmul
    (``7*a*s^2`` instead of 5). A cross-attention block (BLIP's text decoder) adds its query side, 16-bit
    copies of the encoder states for K and V, K/V themselves and its ``7*a*s*kv`` score tensors.
    """
    attention = 11 * s * h + 7 * heads * s * s
    mlp = 3 * s * h + 4 * s * ffn
    norms = 8 * s * h
    cross = 0
    if kv_tokens:
        cross = 15 * s * h + 4 * kv_tokens * kv_hidden + 4 * kv_tokens * h + 7 * heads * s * kv_tokens
    return float(attention + mlp + norms + cross)


def _towers(config, image_size: int | None, text_tokens: int):
    """``(layers, tokens, hidden, heads, ffn, kv_tokens, kv_hidden)`` of the vision and text transformers."""
    towers = []
    vision = getattr(config, "vision_config", None)
    img_tokens, img_hidden = 0, 0
    if vision is not None:
        size = image_size or vision.image_size
        img_tokens = (size // vision.patch_size) ** 2 + 1  # patches + [CLS]
        img_hidden = vision.hidden_size
        towers.append((vision.num_hidden_layers, img_tokens, img_hidden, vision.num_attention_heads,
                       vision.intermediate_size, 0, 0))
    text = getattr(config, "text_config", None) or (config if vision is None else None)
    if text is not None:
        cross = getattr(text, "encoder_hidden_size", None)  # BLIP's text decoder cross-attends to the image
        ffn = getattr(text, "intermediate_size", None) or getattr(text, "ffn_dim", None) or 4 * text.hidden_size
        towers.append((text.num_hidden_layers, text_tokens, text.hidden_size, text.num_attention_heads, ffn,
                       img_tokens if cross else 0, img_hidden if cross else 0))
    return towers, getattr(text, "vocab_size", 0) if text is not None else 0


def activation_bytes_per_image(config_or_id: Any, image_size: int | None = None, text_tokens: int = 200,
                               checkpointing: bool = False, mixed_precision: str = "bf16") -> float:
    """Peak activation bytes per training image of an image-to-text transformer (BLIP), from its config.

    Per layer: :func:`_layer_bytes`. Logits: ``12*s*V`` (16-bit logits, the shifted copy, fp32 cast and fp32
    log-softmax of the loss). With gradient checkpointing each layer keeps only its fp32 input (``4*s*h``) and
    one layer is recomputed at a time. fp32 training doubles everything. The result was checked against the
    measured H100 peak of BLIP-base (tests/test_precision.py: the estimate is 7% above it) and against the
    tensors autograd saves on the ``meta`` device for BLIP-base/large at 224 and 384 px.
    """
    config = model_config(config_or_id)
    towers, vocab = _towers(config, image_size, text_tokens)
    total = 12.0 * text_tokens * vocab
    for layers, s, h, heads, ffn, kv_tokens, kv_hidden in towers:
        layer = _layer_bytes(s, h, heads, ffn, kv_tokens, kv_hidden)
        total += layers * 4 * s * h + layer if checkpointing else layers * layer
    return total * (2 if mixed_precision == "no" else 1)


# ------------------------------------------------------------------------------------------- decisions
def _trainable_split(config, trainable_params: int | None) -> tuple[int, int]:
    total = parameter_count(config)
    trainable = total if trainable_params is None else min(int(trainable_params), total)
    return total, trainable


def static_train_bytes(config_or_id: Any, mixed_precision: str = "bf16", trainable_params: int | None = None) -> int:
    """Weights, gradients and AdamW states of a training run (see the module docstring for the bytes/param)."""
    total, trainable = _trainable_split(model_config(config_or_id), trainable_params)
    half_copies = 2 * total if mixed_precision in ("bf16", "fp16") else 0
    return 16 * trainable + 4 * (total - trainable) + half_copies


@dataclass
class Fit:
    """Answer of :func:`fits_device`: ``ok``, the estimate, the usable memory and a message that says why."""

    ok: bool
    message: str
    need_bytes: int
    usable_bytes: int
    device: DeviceInfo
    details: dict = field(default_factory=dict)

    def __bool__(self) -> bool:
        return self.ok


def fits_device(config_or_id: Any, mode: str = "inference", dtype: torch.dtype | str | None = None,
                device: str | torch.device | DeviceInfo | None = None, name: str | None = None,
                image_size: int | None = None, text_tokens: int = 200, trainable_params: int | None = None,
                verbose: bool = True) -> Fit:
    """Can ``config_or_id`` (config object, hub id or directory; only the config is read) run on ``device``?

    ``mode="inference"``: weights in ``dtype`` (default :func:`inference_dtype`) plus 20%.
    ``mode="train"``: the smallest run :func:`plan_batch` would allow (micro-batch 1 with gradient
    checkpointing); ``dtype`` is then the autocast precision (``"bf16"``/``"fp16"``/``"no"``, default: resolved
    ``auto``). ``verbose`` prints the message when it does not fit.
    """
    if mode not in ("inference", "train"):
        raise ValueError(f"mode must be 'inference' or 'train', not {mode!r}")
    info = device if isinstance(device, DeviceInfo) else device_info(device)
    config = model_config(config_or_id)
    label = model_name(config_or_id, name)
    n = parameter_count(config)
    if mode == "inference":
        dtype = inference_dtype(info) if dtype is None else dtype
        width = _dtype_bytes(dtype)
        need = int(n * width * (1 + INFERENCE_OVERHEAD))
        what = f"{str(dtype).replace('torch.', '')} for inference ({n / 1e9:.2f} B parameters x {width} bytes + 20%)"
        hints = [f"with 8-bit weights (~{n * (1 + INFERENCE_OVERHEAD) / GIB:.1f} GiB)"] if width > 1 else []
        if width == 4:
            hints.insert(0, f"with fp16 weights (~{need / 2 / GIB:.1f} GiB)")
    else:
        by_dtype = {torch.float32: "no", torch.bfloat16: "bf16", torch.float16: "fp16"}
        mp = by_dtype.get(dtype, dtype) if dtype is not None else resolve_mixed_precision("auto", info, False).value
        need = int(static_train_bytes(config, mp, trainable_params)
                   + activation_bytes_per_image(config, image_size, text_tokens, True, mp))
        what = (f"{mp if mp != 'no' else 'fp32'} training at micro-batch 1 with gradient checkpointing "
                f"({n / 1e9:.2f} B parameters; weights, gradients and AdamW states + activations)")
        hints = ["by freezing parts of the model (no gradients or AdamW states for them)"]
    usable = info.usable_bytes
    ok = need <= usable
    where = "this GPU" if info.type == "cuda" else "this machine"
    message = (f"{label} needs ~{need / GIB:.1f} GiB in {what}; {where}, {info.describe()}, has "
               f"{usable / GIB:.1f} GiB usable: {'fits' if ok else 'skipped'}")
    if not ok:
        # smallest total memory whose usable part holds the estimate (inverse of DeviceInfo.usable_bytes)
        wanted = need / (1 - ALLOCATOR_MARGIN) + (CUDA_CONTEXT_BYTES if info.type == "cuda" else 0)
        message += f". It would fit on a GPU with >= {math.ceil(wanted / GIB)} GiB" + \
                   "".join(f", or {h}" for h in hints) + "."
        if verbose:
            print(message)
    return Fit(ok, message, need, usable, info, {"parameters": n, "mode": mode})


@dataclass
class MemoryPlan:
    """Micro-batch, accumulation and checkpointing that keep a recipe's effective batch within the memory."""

    ok: bool
    micro_batch: int
    grad_accum: int
    gradient_checkpointing: bool
    need_bytes: int
    usable_bytes: int
    message: str

    def apply(self, cfg):
        """``cfg`` (a :class:`~medcap_utils.training.TrainConfig`) with this plan's batch settings."""
        if not self.ok:
            raise MemoryError(self.message)
        return cfg.replace(batch_size=self.micro_batch, grad_accum=self.grad_accum,
                           gradient_checkpointing=self.gradient_checkpointing or cfg.gradient_checkpointing)


def plan_batch(config_or_id: Any, batch_size: int, grad_accum: int = 1, image_size: int | None = None,
               text_tokens: int = 200, mixed_precision: str = "bf16",
               device: str | torch.device | DeviceInfo | None = None, trainable_params: int | None = None,
               name: str | None = None, verbose: bool = True) -> MemoryPlan:
    """Largest micro-batch (a divisor of the effective batch ``batch_size * grad_accum``, so the effective batch
    is kept exactly) whose estimate fits, and whether it needs gradient checkpointing.

    Order of preference: the whole micro-batch without checkpointing; else the largest micro-batch without
    checkpointing if it is at least :data:`MIN_EFFICIENT_MICRO_BATCH`; else checkpointing with the largest
    micro-batch it allows. ``mixed_precision`` is the resolved value (``"no"`` doubles activations).
    """
    info = device if isinstance(device, DeviceInfo) else device_info(device)
    config = model_config(config_or_id)
    label = model_name(config_or_id, name)
    effective = batch_size * grad_accum
    static = static_train_bytes(config, mixed_precision, trainable_params)
    per_image = {ckpt: activation_bytes_per_image(config, image_size, text_tokens, ckpt, mixed_precision)
                 for ckpt in (False, True)}
    usable = info.usable_bytes
    divisors = [d for d in range(effective, 0, -1) if effective % d == 0]

    def largest(ckpt: bool) -> int:
        return next((d for d in divisors if static + d * per_image[ckpt] <= usable), 0)

    plain, ckpt = largest(False), largest(True)
    if plain == effective or plain >= MIN_EFFICIENT_MICRO_BATCH or (plain and plain >= ckpt):
        micro, use_ckpt = plain, False
    else:
        micro, use_ckpt = ckpt, True
    ok = micro > 0
    micro = micro or 1
    need = int(static + micro * per_image[use_ckpt if ok else True])
    summary = (f"{label}: effective batch {effective} as micro-batch {micro} x {effective // micro} accumulation"
               f"{' with gradient checkpointing' if use_ckpt else ''} (~{need / GIB:.1f} GiB: "
               f"{static / GIB:.1f} weights/grads/AdamW + {micro} x {per_image[use_ckpt] / GIB:.2f} activations; "
               f"{info.describe()} has {usable / GIB:.1f} GiB usable)")
    if not ok:
        summary = (f"{label} does not fit {info.describe()} for training even at micro-batch 1 with gradient "
                   f"checkpointing: ~{need / GIB:.1f} GiB needed, {usable / GIB:.1f} GiB usable: skipped")
    if verbose and (not ok or micro != batch_size or use_ckpt):
        print(summary)
    return MemoryPlan(ok, micro, effective // micro, use_ckpt, need, usable, summary)
