"""Notebook ``01_dataset_statistics``'s steps: the splits of ``data_dir`` with their concept names, and the same
statistics beside the 93 real ROCOv2 test rows of ``sample_dir`` (seed 000 Fig. 1-2, seed 002 Fig. 2-3).

The statistics and figures themselves are :mod:`medcap_utils.data.statistics`; this module holds what the notebook
does with them.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from IPython.display import display

from medcap_utils.data import statistics as stats
from medcap_utils.data.rocov2 import SPLITS, read_cui_mapping, split_frame
from medcap_utils.report import save_figure, save_table


def load_splits(root: Path) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
    """Every split of ``root`` as :func:`~medcap_utils.data.rocov2.split_frame` (no image decoded) and the CUI names
    of ``cui_mapping.csv`` (empty when the dataset has none)."""
    frames = {split: split_frame(root, split) for split in SPLITS}
    names = read_cui_mapping(root / "cui_mapping.csv") if (root / "cui_mapping.csv").exists() else {}
    return frames, names


def compare_with_sample(frames: dict[str, pd.DataFrame], sample: Path) -> None:
    """Caption lengths and modalities of the demo's test split beside the real ROCOv2 rows in ``sample`` (its
    captions and concepts only; no image is read): tables ``01_demo_vs_rocov2_sample_lengths`` and
    ``01_rocov2_sample_modalities``, shown, and the length figure; a line saying so when there is no sample."""
    if not (sample / "test_captions.csv").exists():
        print(f"{sample} not found: comparison skipped")
        return
    captions = split_frame(sample, "test")  # the sample keeps the ROCOv2 file names; no images are read
    comparison = {"demo test": frames["test"], "ROCOv2 sample": captions}
    side_by_side = stats.caption_length_summary(comparison)
    save_table(side_by_side, "01_demo_vs_rocov2_sample_lengths")
    sample_modalities = stats.modality_distribution({"ROCOv2 sample": captions})
    save_table(sample_modalities, "01_rocov2_sample_modalities")
    display(side_by_side.round(1))
    display(sample_modalities.round(3))
    save_figure(stats.plot_caption_lengths(comparison, clip_quantile=1.0), "01_demo_vs_rocov2_sample_lengths")
