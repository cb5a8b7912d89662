"""The one rule that decides whether a saved, trained model folder is loaded or the model is trained (again).

Notebooks 02, 03, 04, 05 and 07 (and their tests) save every trained model with what it was trained with (its
resolved recipe and TrainConfig, ``recipe_hash`` included) and ask :func:`should_reuse` before training:

1. ``retrain=True``: train.
2. The folder is not complete (its ``checksums.sha256``, written last, is missing: the save never finished)
   or a file no longer matches its checksum (truncated, overwritten): train again.
3. It records no settings (saved before they were recorded): reuse, as before.
4. :func:`reuse_key` of the recorded settings equals that of the settings now resolved: reuse. The key is
   :func:`medcap_utils.training.recipe.recipe_hash` of the settings without the fields that cannot change the
   weights (``REUSE_MAY_CHANGE``: progress, workers, output folder...) and without the recorded ``recipe_hash``
   entries themselves (the recipe's hash covers those display fields and misses overrides a notebook applies
   after resolving, such as MedBLIP's demo width, so the settings are hashed again here).
5. Otherwise the settings differ: when only what a run may be extended by differs (epochs, max_steps,
   early-stopping patience) the model is trained (again, or on from its checkpoints); any other difference is
   refused with a ValueError naming each change (``retrain=True``, another folder, or deleting it are the fixes).

Every decision is printed in one line saying why.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from medcap_utils.training.resume import RESUME_MAY_CHANGE, REUSE_MAY_CHANGE, config_changes


class Stale(Exception):
    """Raised by a ``recorded`` callable of :func:`should_reuse` when the folder is out of date for a reason the
    settings do not record (e.g. trained on another dataset): the model is trained again, the reason printed."""


def flat_settings(settings: dict) -> dict:
    """``{"recipe": {...}, "train": {...}}`` -> ``{"recipe.k": v, "train.k": v}`` (one level; keys that are
    already flat, such as the LSTM's ``train.lr``, stay as they are)."""
    out = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


def _ignored(key: str, may_change) -> bool:
    field = key.rpartition(".")[2]
    return field == "recipe_hash" or (key.startswith("train.") and field in may_change)


def _kept(settings: dict, may_change) -> dict:
    kept = {k: v for k, v in flat_settings(settings).items() if not _ignored(k, may_change)}
    return json.loads(json.dumps(kept, default=str))  # as a folder records them: tuples -> lists, paths -> str


def reuse_key(settings: dict) -> str:
    """sha256 of the settings that decide the trained weights (:func:`recipe.recipe_hash` of them)."""
    from medcap_utils.training.recipe import recipe_hash

    return recipe_hash(_kept(settings, REUSE_MAY_CHANGE))


def settings_changes(recorded: dict, current: dict, may_change=RESUME_MAY_CHANGE) -> list[str]:
    """``"section.key: old -> new"`` for each setting that differs, ignoring training fields in ``may_change``
    (default: those a resumed run may change) and the recorded recipe hashes."""
    return config_changes(_kept(recorded, may_change), _kept(current, may_change), may_change=())


def should_reuse(folder: str | Path, current: dict, recorded: Callable[[], dict | None], retrain: bool = False,
                 what: str = "model") -> bool:
    """True: load ``folder``; False: train. ``current``: the settings now resolved (the same shape the folder
    records); ``recorded()``: the folder's recorded settings, read only once the folder is known complete
    (None: saved before settings were recorded; it may raise :class:`Stale`). Raises ValueError when settings
    that decide the weights differ. Prints one line saying why it reuses or trains."""
    from medcap_utils.model_files import CorruptModelError, is_complete, verify_model_dir

    folder = Path(folder)
    if retrain:
        return _say(folder, False, "retrain=True; training again")
    if not folder.is_dir():
        return _say(folder, False, f"no saved {what}; training")
    if not is_complete(folder):
        return _say(folder, False, "its save did not finish (no checksums.sha256); training again")
    try:
        verify_model_dir(folder, require_checksums=True)
        old = recorded()
    except CorruptModelError as err:
        return _say(folder, False, f"{err.file} {err.problem}; training again")
    except Stale as why:
        return _say(folder, False, f"{why}; training again")
    if old is None:
        return _say(folder, True, "saved before settings were recorded; reusing it as before")
    key = reuse_key(current)
    if reuse_key(old) == key:
        return _say(folder, True, f"trained with the same recipe (settings hash {key[:12]}); reusing it")
    changes = settings_changes(old, current)
    if changes:
        raise ValueError(f"{folder} holds a {what} trained with other settings:\n  " + "\n  ".join(changes)
                         + f"\nFix: retrain=True (trains again from scratch), another out_dir, or delete {folder}.")
    longer = settings_changes(old, current, may_change=REUSE_MAY_CHANGE)
    return _say(folder, False, f"trained with {'; '.join(longer)}; training again")


def _say(folder: Path, reuse: bool, why: str) -> bool:
    print(f"{folder}: {why}")
    return reuse
