"""Resuming :func:`medcap_utils.training.fit` after a kill: which checkpoints are complete, which training settings may
differ between a checkpoint and the run that resumes it (``RESUME_MAY_CHANGE``) or reuses its finished model
(``REUSE_MAY_CHANGE``), and the refusal (``ResumeMismatchError``) when any other setting changed. Serves every
training notebook (02, 03, 05-07) and the folder reuse of ``training.blip``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from .config import TrainConfig


def complete_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints, oldest first (a directory is renamed into place only once written)."""
    if not root.is_dir():
        return []
    found = [p for p in root.glob("step_*") if p.is_dir() and (p / "loop_done").exists()]
    return sorted(found, key=lambda p: int(p.name.split("_")[1]))


#: TrainConfig fields that may differ between a checkpoint and the run resuming it. Everything else (lr,
#: batch size, schedule, seed, precision, any field added later such as a recipe hash) changes what the
#: resumed steps compute, so a resume with another value is refused rather than mixing two runs.
RESUME_MAY_CHANGE = frozenset({
    "epochs", "max_steps",  # extending (or cutting short) a run is what resuming is for; note that a cosine or
    #                         linear schedule is stretched to the new length from the resumed step on
    "early_stopping_patience",  # decides when to stop, not what a step computes
    "progress", "log_every",  # display only
    "num_workers",  # loader processes; batches and their order depend on (seed, epoch) only
    "output_dir",  # the same folder moved or named by another path
    "resume",  # how this call starts, not what the run is
    "keep_checkpoints", "checkpoint_every_steps",  # when and how many checkpoints are kept
    "gradient_checkpointing",  # recomputes activations in the backward pass: memory only, same gradients
})


#: The part of RESUME_MAY_CHANGE that does not change the trained weights at all: a finished model folder is
#: reused when only these differ. epochs, max_steps and early_stopping_patience do change the result, so a
#: finished model with other values is trained on (resumed) or trained again, never reused as it is.
REUSE_MAY_CHANGE = RESUME_MAY_CHANGE - {"epochs", "max_steps", "early_stopping_patience"}


class ResumeMismatchError(ValueError):
    """A checkpoint saved with other training settings than the run that would resume it."""


def _comparable(config: dict) -> dict:
    return json.loads(json.dumps(config, default=str))  # tuples -> lists, paths -> str, as stored


def config_changes(old: dict, new: dict, may_change: Iterable[str] = RESUME_MAY_CHANGE) -> list[str]:
    """``"key: old -> new"`` for every setting that differs (keys only one side has count as changed)."""
    old, new, skip = _comparable(old), _comparable(new), set(may_change)
    return [f"{k}: {old.get(k, '<absent>')!r} -> {new.get(k, '<absent>')!r}"
            for k in sorted(set(old) | set(new)) if k not in skip and old.get(k, "<absent>") != new.get(k, "<absent>")]


def check_resume(checkpoint: Path, cfg: TrainConfig) -> None:
    """Refuse to resume ``checkpoint`` when it was trained with other settings than ``cfg`` (checkpoints
    from before the settings were recorded are resumed as before)."""
    recorded = json.loads((checkpoint / "loop_done").read_text()).get("config")
    if recorded is None:
        return
    changes = config_changes(recorded, cfg.to_dict())
    if changes:
        out = checkpoint.parent.parent
        raise ResumeMismatchError(
            f"{out} holds a run trained with other settings; resuming it would continue the old run under "
            f"the new settings:\n  " + "\n  ".join(changes) + f"\nFix: write to a new output_dir, delete {out} "
            "to train from scratch there, or pass resume=False (the old checkpoints are overwritten).")
