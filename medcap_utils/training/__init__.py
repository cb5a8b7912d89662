"""Generic Hugging Face Accelerate training loop used by every trainable model (notebooks 02, 03, 05-07).

``fit(model, train_dataset, TrainConfig(...), loss_fn, ...)`` -> ``TrainResult``; see ``loop.py``.
"""
from .config import TrainConfig, TrainResult
from .loop import (RESUME_MAY_CHANGE, REUSE_MAY_CHANGE, EpochShuffleSampler, ResumeMismatchError, build_optimizer, config_changes,
                   enable_gradient_checkpointing, fit, lr_factor, mean_loss, move_to)

__all__ = ["TrainConfig", "TrainResult", "fit", "build_optimizer", "lr_factor", "mean_loss", "move_to",
           "EpochShuffleSampler", "enable_gradient_checkpointing", "RESUME_MAY_CHANGE", "REUSE_MAY_CHANGE", "ResumeMismatchError",
           "config_changes"]
