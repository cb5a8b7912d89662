"""What one optimiser step of :func:`medcap_utils.training.fit` does: the optimiser a recipe names (AdamW, Adam,
SGD), the learning-rate factor of the warm-up and schedule (step, cosine, linear), and transformers' gradient
checkpointing. Used by every training notebook (02, 03, 05-07) through ``fit``.
"""
from __future__ import annotations

import math
from typing import Iterable

import torch

from .config import TrainConfig


def build_optimizer(params: Iterable[torch.nn.Parameter], cfg: TrainConfig,
                    fused: bool | None = None) -> torch.optim.Optimizer:
    """AdamW / Adam / SGD from the recipe; Adam(W) uses the fused CUDA kernel when the parameters are on a GPU
    (one launch for all tensors instead of several per tensor; same update up to rounding)."""
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError("no trainable parameters (everything frozen?)")
    fused = params[0].is_cuda if fused is None else fused
    fused = fused or None  # None: torch's default (foreach)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay,
                                 fused=fused)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay,
                                fused=fused)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def enable_gradient_checkpointing(model: torch.nn.Module) -> None:
    """Per-layer activation recomputation of a transformers model (BLIP: vision encoder and text decoder layers
    are ``GradientCheckpointingLayer``s in transformers 5). Non-reentrant checkpointing, as PyTorch recommends:
    it needs no input that requires grad, so a frozen embedding or vision encoder does not cut the gradient."""
    if not getattr(model, "supports_gradient_checkpointing", False):
        raise ValueError(f"{type(model).__name__} does not support gradient checkpointing")
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.24; the old name warns there
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def lr_factor(step: int, cfg: TrainConfig, steps_per_epoch: int, total_steps: int) -> float:
    """Multiplier of ``cfg.lr`` after ``step`` optimiser steps: linear warm-up, then the schedule.

    StepLR counts whole epochs (``step // steps_per_epoch``), as the papers state it.
    """
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.scheduler == "step":
        return cfg.gamma ** ((step // max(steps_per_epoch, 1)) // max(cfg.step_size, 1))
    if cfg.scheduler in ("cosine", "linear"):
        span = max(total_steps - cfg.warmup_steps, 1)
        progress = min(max(step - cfg.warmup_steps, 0) / span, 1.0)
        shape = 0.5 * (1 + math.cos(math.pi * progress)) if cfg.scheduler == "cosine" else 1 - progress
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * shape
    return 1.0
