"""Generic Hugging Face Accelerate training loop used by every trainable model (notebooks 02, 03, 05-07).

``fit(model, train_dataset, TrainConfig(...), loss_fn, ...)`` -> ``TrainResult``; see ``loop.py`` (the loop),
``optim.py`` (optimiser, learning-rate schedule, gradient checkpointing) and ``resume.py`` (checkpoints that resume
only under the same settings). Around it: the recipes (``recipe`` reads ``configs/recipes/*.yaml`` against the
``recipe_schema`` dataclasses), per-model training (``blip``, ``medcsra``, ``msmedcap_pretrain``, the batches of
``captioning_data``), the one load-or-train rule (``reuse``) and the sanity checks (``sanity``).
"""
from .config import TrainConfig, TrainResult
from .loop import EpochShuffleSampler, fit, mean_loss, move_to
from .optim import build_optimizer, enable_gradient_checkpointing, lr_factor
from .resume import RESUME_MAY_CHANGE, REUSE_MAY_CHANGE, ResumeMismatchError, config_changes

__all__ = ["TrainConfig", "TrainResult", "fit", "build_optimizer", "lr_factor", "mean_loss", "move_to",
           "EpochShuffleSampler", "enable_gradient_checkpointing", "RESUME_MAY_CHANGE", "REUSE_MAY_CHANGE",
           "ResumeMismatchError",
           "config_changes"]
