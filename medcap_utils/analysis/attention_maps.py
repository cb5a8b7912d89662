"""Per-image attention maps of a caption run, kept beside its run file for the results explorer.

A caption run directory (``reports/runs/<name>/``, :func:`medcap_utils.evaluation.runfiles.write_run_dir`) may hold
``attention/``: ``index.json`` ({kind, grid, images: {ID: {tokens, file}}}) and one ``<ID>.npy`` per
image, float16 ``(tokens, h, w)``, one map per generated word over the model's feature grid. Notebook 07
saves the attention-LSTM's visual attention for every test image, notebook 03 the BLIP decoder
cross-attention of its gallery images; :mod:`medcap_utils.explorer.app` overlays them on the image.
``.npy`` rather than ``.npz``: its bytes do not depend on the clock, so ``make repeat-check`` can compare
two runs' maps byte for byte.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

FOLDER = "attention"
INDEX = "index.json"


@dataclass
class AttentionMap:
    """One image's maps: ``maps[k]`` (h, w) is where the model looked while writing ``tokens[k]``."""

    run: str
    image_id: str
    kind: str
    tokens: list[str]
    maps: np.ndarray  # float32 (tokens, h, w)


def _file_name(image_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in image_id) + ".npy"


def write_attention_maps(run_dir, image_ids: Sequence[str], tokens: Sequence[Sequence[str]],
                         maps: Sequence[np.ndarray], kind: str) -> Path:
    """Save ``maps[i]`` ((steps, h, w), steps >= len(tokens[i]); extra steps such as ``<end>`` are dropped)
    for each image into ``<run_dir>/attention/``; returns that folder. An existing index is extended."""
    folder = Path(run_dir) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    index_path = folder / INDEX
    index = json.loads(index_path.read_text()) if index_path.exists() else {"kind": kind, "images": {}}
    index["kind"] = kind
    for image_id, words, att in zip(image_ids, tokens, maps):
        att = np.asarray(att, dtype=np.float32)
        words = [str(w) for w in words]
        if att.ndim != 3 or att.shape[0] < len(words):
            raise ValueError(f"{image_id}: maps of shape {att.shape} for {len(words)} tokens; "
                             f"expected (steps>=tokens, h, w)")
        name = _file_name(image_id)
        np.save(folder / name, att[: len(words)].astype(np.float16))
        index["images"][str(image_id)] = {"tokens": words, "file": name}
        index["grid"] = list(att.shape[1:])
    index["images"] = dict(sorted(index["images"].items()))
    index_path.write_text(json.dumps(index, indent=1))
    return folder


def attention_index(run_dir) -> dict:
    """The run's ``attention/index.json`` ({} when the run saved no maps)."""
    path = Path(run_dir) / FOLDER / INDEX
    return json.loads(path.read_text()) if path.exists() else {}


def read_attention_map(run_dir, image_id: str, index: dict | None = None) -> AttentionMap | None:
    """The maps of ``image_id`` in this run, or None when the run saved none for it."""
    index = attention_index(run_dir) if index is None else index
    entry = index.get("images", {}).get(image_id)
    if entry is None:
        return None
    maps = np.load(Path(run_dir) / FOLDER / entry["file"]).astype(np.float32)
    return AttentionMap(Path(run_dir).name, image_id, index.get("kind", ""), list(entry["tokens"]), maps)
