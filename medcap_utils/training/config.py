"""Training settings shared by every model in the repository (BLIP, ViT-GPT2, CNN captioners, MedCSRA).

Used by notebooks 02, 03, 05, 06 and 07 through :func:`medcap_utils.training.fit`. A recipe YAML under
``configs/recipes/`` holds one ``train:`` mapping per model; :func:`medcap_utils.training.recipe.read_recipe` reads
whole recipes (and :meth:`TrainConfig.from_yaml` one section) with the same type checks.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class TrainConfig:
    """Everything :func:`fit` needs besides the model, the data and the loss.

    Step counts are optimiser steps (one step = ``grad_accum`` micro-batches); ``step_size`` of the
    StepLR schedule is in epochs because that is how the papers state it ("x0.1 every 3 epochs").
    """

    epochs: int = 1
    lr: float = 1e-4
    weight_decay: float = 0.0
    optimizer: str = "adamw"  # "adamw" | "adam" | "sgd"
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    momentum: float = 0.9  # sgd only
    scheduler: str = "none"  # "none" | "step" | "cosine" | "linear"
    step_size: int = 1  # epochs between StepLR decays
    gamma: float = 0.1  # StepLR factor
    warmup_steps: int = 0  # linear warm-up from 0, in optimiser steps
    min_lr_ratio: float = 0.0  # cosine/linear floor as a fraction of lr
    batch_size: int = 8  # per process
    grad_accum: int = 1
    #: "auto" | "no" | "bf16" | "fp16"; fit() resolves it for the device (medcap_utils.device.resolve_mixed_precision):
    #: auto = bf16 on compute capability >= 8.0, fp16 + GradScaler below, fp32 on CPU; bf16 on an older GPU -> fp16
    mixed_precision: str = "no"
    #: keep an explicit "bf16" on a CPU (bf16 numerics studies such as medcap_utils.runner.loss_curves); otherwise a CPU
    #: run is fp32 whatever mixed_precision says
    allow_cpu_autocast: bool = False
    #: recompute each transformer layer in the backward pass (HF gradient_checkpointing_enable): activations of a
    #: layer are not kept, at the cost of one more forward; medcap_utils.memory.plan_batch turns it on when needed
    gradient_checkpointing: bool = False
    max_grad_norm: float | None = None  # None = no clipping
    seed: int = 0
    early_stopping_patience: int | None = None  # epochs without improvement; None = off
    monitor: str = "val_loss"
    monitor_mode: str = "min"  # "min" | "max"
    checkpoint_every_steps: int | None = None  # None = only at the end of each epoch (if output_dir)
    keep_checkpoints: int = 2
    output_dir: str | None = None  # None = no checkpoints, no saved best model
    resume: bool = True  # continue from the newest checkpoint in output_dir if there is one
    num_workers: int = 0
    log_every: int = 10  # steps between progress-bar loss updates (each one is a host sync)
    max_steps: int | None = None  # stop after this many optimiser steps in total (smoke runs)
    drop_last: bool = False
    progress: bool = True
    #: sha256 of the resolved recipe this config came from (medcap_utils.training.recipe.recipe_hash); None when built
    #: in code. Saved with checkpoints and models so a run records which recipe values trained it
    recipe_hash: str | None = None

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)  # YAML gives a list
        for name, allowed in [
            ("optimizer", {"adamw", "adam", "sgd"}),
            ("scheduler", {"none", "step", "cosine", "linear"}),
            ("mixed_precision", {"auto", "no", "bf16", "fp16"}),
            ("monitor_mode", {"min", "max"}),
        ]:
            if getattr(self, name) not in allowed:
                raise ValueError(f"TrainConfig.{name}={getattr(self, name)!r}; expected one of {sorted(allowed)}")
        if self.grad_accum < 1 or self.batch_size < 1 or self.epochs < 0:
            raise ValueError("batch_size and grad_accum must be >= 1 and epochs >= 0")

    def replace(self, **changes: Any) -> "TrainConfig":
        """A copy with some fields changed (notebook parameters over a recipe)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, values: dict[str, Any], **overrides: Any) -> "TrainConfig":
        """Build from a mapping; unknown keys are an error so a typo in a recipe cannot pass silently."""
        merged = {**values, **{k: v for k, v in overrides.items() if v is not None}}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(merged) - known)
        if unknown:
            raise KeyError(f"unknown TrainConfig keys {unknown}; known: {sorted(known)}")
        return cls(**merged)

    @classmethod
    def from_yaml(cls, path: str | Path, section: str | None = None, **overrides: Any) -> "TrainConfig":
        """Read ``section`` (dotted path, e.g. ``"blip_base.train"``) of a YAML file, types checked by
        :func:`medcap_utils.training.recipe.read_section` (a :class:`~medcap_utils.training.recipe.RecipeError`
        names file and key).

        ``overrides`` that are not None replace recipe values (notebook parameters win).
        """
        from medcap_utils.training.recipe import RecipeError, read_section

        values = read_section(path, section, cls, {k: v for k, v in overrides.items() if v is not None})
        try:
            return cls(**values)
        except ValueError as error:  # a choice or range check of __post_init__: say which file
            raise RecipeError(f"{path}: {section or '<top>'}: {error}") from None


@dataclass
class TrainResult:
    """What :func:`fit` returns: per-epoch history, the best monitored value, timings, where files went."""

    history: Any  # pandas DataFrame, one row per epoch
    best: dict[str, Any] = field(default_factory=dict)  # {"epoch", "step", monitor: value}
    wall_time_s: float = 0.0  # this call only (a resumed run counts its own time)
    train_time_s: float = 0.0  # summed over all epochs, including those before a resume
    output_dir: Path | None = None
    global_step: int = 0
    stopped_early: bool = False
    best_dir: Path | None = None
    #: training loss of every optimiser step (mean over its accumulated micro-batches), this process; the
    #: loss-curve comparison of fast and plain BLIP training (``medcap_utils.runner.loss_curves``) reads it
    step_losses: list[float] = field(default_factory=list)
    #: the precision the run actually used ("no" = fp32, "bf16", "fp16") and why (cfg.mixed_precision may say "auto")
    mixed_precision: str = "no"
    #: keep an explicit "bf16" on a CPU (bf16 numerics studies such as medcap_utils.runner.loss_curves); otherwise a CPU
    #: run is fp32 whatever mixed_precision says
    allow_cpu_autocast: bool = False
    precision_reason: str = ""
