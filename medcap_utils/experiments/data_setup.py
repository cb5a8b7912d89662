"""Notebook ``00_data_setup``'s steps: build (demo), fetch (a Hugging Face or Zenodo subset) or locate (ROCOv2) the
dataset in the ROCOv2 layout, tabulate what the validation found, and build the decode-once image caches every
training notebook reads.

The notebook keeps its parameters, its narrative and the calls; the checks themselves are
:func:`medcap_utils.data.check.check_dataset`, the writers :func:`medcap_utils.data.synth.synthesize` and
:func:`medcap_utils.data.subset.subset`.
"""
from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from medcap_utils.data.cache import get_image_cache
from medcap_utils.data.rocov2 import SPLITS
from medcap_utils.paths import resolve

#: the columns of the validation's problem table (kind, file/line/ID, what is wrong)
PROBLEM_COLUMNS = ["kind", "where", "detail"]


def prepare_dataset(root: Path, source: str, hf_dataset: str, seed: int, n_train: int, n_valid: int, n_test: int,
                    rebuild: bool = False) -> list[str]:
    """Synthesize (``source="synth"``) or fetch a subset (``"hf"``) into ``root`` when it holds no dataset yet (or
    ``rebuild``); ``"rocov2"`` only reads. Prints what it wrote and how long it took; returns the file names in
    ``root``. Fails when ``root`` then holds no ROCOv2 captions."""
    if source == "synth" and (rebuild or not (root / "train_captions.csv").exists()):
        from medcap_utils.data.synth import synthesize

        start = time.perf_counter()
        summary = synthesize(root, seed=seed, n_train=n_train, n_valid=n_valid, n_test=n_test)
        print(f"synthesized in {time.perf_counter() - start:.1f} s:", summary)
    if source == "hf" and (rebuild or not (root / "train_captions.csv").exists()):
        from medcap_utils.data.subset import subset

        start = time.perf_counter()
        local = resolve(hf_dataset)  # a local copy (or the Zenodo files) when the folder exists, else the hub id
        summary = subset(root, {"train": n_train, "valid": n_valid, "test": n_test}, seed=seed,
                         source=str(local) if local.exists() else hf_dataset)
        print(f"subset of {hf_dataset} written in {time.perf_counter() - start:.1f} s:", summary)
    assert (root / "train_captions.csv").exists(), f"no ROCOv2 files in {root}: see the instructions above"
    return sorted(p.name for p in root.iterdir())


def check_counts(report) -> pd.DataFrame:
    """The validation's counts, one row per split (``00_check_counts``)."""
    return pd.DataFrame(report.counts).T.rename_axis("split").reset_index()


def problems_table(report, rows: int = 20) -> pd.DataFrame:
    """The first ``rows`` problems and warnings of the validation, each with its kind, place and detail."""
    return pd.DataFrame([vars(p) for p in report.problems + report.warnings], columns=PROBLEM_COLUMNS).head(rows)


def build_caches(root: Path, sizes) -> pd.DataFrame:
    """Build (or open) the uint8 image cache of every split at every size; one row each with the time it took."""
    rows = []
    for size in sizes:
        for split in SPLITS:
            start = time.perf_counter()
            cache = get_image_cache(root, split, size)
            rows.append({"split": split, "size": size, "images": len(cache),
                         "build_or_open_s": round(time.perf_counter() - start, 2),
                         "MB": round(cache.images.nbytes / 2**20, 1), "path": cache.path.name})
    return pd.DataFrame(rows)


def build_standins(profile: str, enabled: bool = True) -> pd.DataFrame:
    """Demo profile: the pretrained stand-ins later notebooks start from (``medcap standins``; reused when their
    recipe is unchanged), one row each with its pretraining time and its quality on the general valid split (the
    captioner: BLEU-4 and distinct captions; the classifier: micro-F1 beside the all-positive F1).
    Other profiles start from hub checkpoints: an empty table."""
    columns = ["role", "folder", "steps", "train_time_s", "build_time_s", "first_epoch_loss", "last_epoch_loss",
               "valid_bleu4", "valid_distinct_captions", "valid_micro_f1", "valid_chance_micro_f1",
               "valid_prior_micro_f1", "valid_images"]
    if profile != "demo" or not enabled:
        return pd.DataFrame(columns=columns)
    from medcap_utils.training.standins import build_standins as build

    start = time.perf_counter()
    infos = build()
    print(f"stand-ins ready in {time.perf_counter() - start:.1f} s (this call)")
    return pd.DataFrame([{"role": role, "folder": info["recipe"]["out"], **info} for role, info in infos.items()],
                        columns=columns)
