"""Notebook ``04_decoding_experiments``: seed 000's decoding grid (greedy, beam 3, 4, 5, 10, all with
``no_repeat_ngram_size=3``) and the paper's Table 1.

Each configuration captions a split in batches, measures captions per second and peak memory, and writes
``reports/runs/<name>/`` (ImageCLEF run file + ``run.json``, the metrics JSON and ``decoding.json`` with speed
and memory).
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from medcap_utils.data.cache import get_image_cache
from medcap_utils.data.rocov2 import split_frame
from medcap_utils.decoding.captioners import Captioner, DecodingConfig, caption_split
from medcap_utils.evaluation.evaluate import evaluate_captions
from medcap_utils.evaluation.runfiles import write_run_dir
from medcap_utils.paths import resolve

DECODING_GRID = (
    DecodingConfig("greedy", 1, label="(1)"),
    DecodingConfig("beam3", 3, label="(2)"),
    DecodingConfig("beam4", 4, label="(3)"),
    DecodingConfig("beam5", 5, label="(4)"),
    DecodingConfig("beam10", 10, label="(5)"),
)


def paper_table1() -> pd.DataFrame:
    """Seed 000 Table 1 (validation set), transcribed as printed. The paper prints identical rows
    for (1) greedy and (5) beam 10 for both models; kept as printed, not corrected."""
    rows = [
        ("BLIP base", "(1)", 0.263178, 0.659321, 0.291905),
        ("BLIP base", "(2)", 0.264012, 0.658852, 0.300932),
        ("BLIP base", "(3)", 0.264665, 0.659548, 0.299855),
        ("BLIP base", "(4)", 0.264674, 0.659648, 0.297638),
        ("BLIP base", "(5)", 0.263178, 0.659321, 0.291905),
        ("BLIP large", "(1)", 0.269548, 0.666101, 0.285273),
        ("BLIP large", "(2)", 0.274387, 0.667651, 0.295454),
        ("BLIP large", "(3)", 0.274497, 0.667971, 0.295484),
        ("BLIP large", "(4)", 0.272249, 0.667263, 0.292144),
        ("BLIP large", "(5)", 0.269548, 0.666101, 0.285273),
    ]
    frame = pd.DataFrame(rows, columns=["model", "label", "ROUGE", "BERTScore", "BLEU"])
    names = {c.label: c.name for c in DECODING_GRID}
    frame.insert(2, "decoding", frame["label"].map(names))
    return frame


def run_decoding_grid(
    captioner: Captioner,
    data_dir: str | Path,
    split: str,
    model_name: str,
    configs=DECODING_GRID,
    batch_size: int = 16,
    max_new_tokens: int = 40,
    limit: int | None = None,
    protocol: str = "imageclef2024",
    metrics: list[str] | None = None,
    run_prefix: str = "decoding",
    meta: dict | None = None,
    warmup: int = 1,
    repeats: int = 1,
) -> pd.DataFrame:
    """Caption ``split`` once per decoding configuration; one run directory and one table row each.

    Run directories are ``reports/runs/<run_prefix>_<model_name>_<config.name>/``. ``limit`` keeps the
    first N images (demo). Returns one row per configuration: metrics, captions/s (after ``warmup`` untimed
    batches; median and min-max over the timed batches of ``repeats`` passes), peak memory.
    Used by notebook 04.
    """
    root = resolve(data_dir)
    frame = split_frame(root, split)
    cache = get_image_cache(root, split, captioner.image_size)
    wanted = set(frame["id"])
    ids = [i for i in cache.ids if i in wanted][:limit]
    images = cache.images[[cache.index[i] for i in ids]]
    gt = dict(zip(frame["id"], frame["caption"]))
    gt = {i: gt[i] for i in ids}
    rows = []
    for config in configs:
        preds, speed = caption_split(captioner, images, ids, batch_size=batch_size, warmup=warmup, repeats=repeats,
                                     **config.generate_kwargs(max_new_tokens))
        name = f"{run_prefix}_{model_name}_{config.name}"
        # `subset` tells notebook 08 to score the run on its own images instead of rejecting the
        # missing IDs as an official validator would.
        run_meta = {"model": model_name, "decoding": asdict(config), "max_new_tokens": max_new_tokens,
                    "subset": len(ids) < len(frame),
                    "batch_size": batch_size, "device": str(captioner.device), **speed, **(meta or {})}
        run_dir = write_run_dir(name, "captions", split, str(data_dir), preds, meta=run_meta)
        result = evaluate_captions(gt, preds, protocol=protocol, metrics=metrics, out_dir=run_dir)
        (Path(run_dir) / "decoding.json").write_text(json.dumps(run_meta, indent=2, default=str))
        rows.append({"model": model_name, "label": config.label, "decoding": config.name,
                     "num_beams": config.num_beams, "n_images": len(ids), **result["scores"],
                     **{k: speed[k] for k in ("captions_per_s", "captions_per_s_median", "captions_per_s_min",
                                              "captions_per_s_max", "timed_calls")},
                     "peak_mb": speed["peak_mb"],
                     "delta_mb": speed["delta_mb"], "run_dir": str(run_dir)})
    return pd.DataFrame(rows)
