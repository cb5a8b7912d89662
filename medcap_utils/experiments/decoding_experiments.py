"""Notebook ``04_decoding_experiments``: seed 000's decoding grid (greedy, beam 3, 4, 5, 10, all with
``no_repeat_ngram_size=3``) and the paper's Table 1.

Each configuration captions a split in batches, measures captions per second and peak memory, and writes
``reports/runs/<name>/`` (ImageCLEF run file + ``run.json``, the metrics JSON and ``decoding.json`` with speed
and memory).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from medcap_utils.data.cache import get_image_cache
from medcap_utils.data.rocov2 import split_frame
from medcap_utils.decoding.captioners import Captioner, caption_split_with_speed
from medcap_utils.decoding.config import DecodingConfig
from medcap_utils.evaluation.evaluate import evaluate_captions
from medcap_utils.evaluation.runfiles import write_run_dir
from medcap_utils.paths import resolve
from medcap_utils.training.blip import load_blip_recipe
from medcap_utils.training.sanity import require

#: seed 000's recipe: notebook 02 trains base and large from it, notebook 04 compares them
RECIPE_2Q2T = "configs/recipes/2q2t-2024.yaml"


@dataclass(frozen=True)
class GridSetting:
    """One row of seed 000's grid: a run name, the paper's numbering ``(1)`` to ``(5)`` and its decoding.
    Everything the config leaves unset stays at the generation defaults (length_penalty 1.0, no early
    stopping), which is what the authors' scripts leave unset too."""

    name: str
    label: str
    config: DecodingConfig


DECODING_GRID = tuple(GridSetting(name, f"({i})", DecodingConfig(num_beams=beams, no_repeat_ngram_size=3))
                      for i, (name, beams) in enumerate([("greedy", 1), ("beam3", 3), ("beam4", 4), ("beam5", 5),
                                                          ("beam10", 10)], start=1))


def _flat(values: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def recipe_differences(profile: str, recipe: str = RECIPE_2Q2T) -> pd.DataFrame:
    """Every resolved recipe setting in which the ``blip_base`` and ``blip_large`` sections differ under
    ``profile`` (one row each: setting, base, large; the hashes and output folders left out). In the demo only
    the size may differ (``demo.per_model``): anything else raises, so the comparison stays like for like."""
    rows = []
    sides = {}
    for key in ("blip_base", "blip_large"):
        resolved = load_blip_recipe(recipe, key, profile)
        sides[key] = _flat({**{k: v for k, v in resolved.items() if k not in ("train", "recipe_hash")},
                            "train": {k: v for k, v in resolved["train"].to_dict().items()
                                      if k not in ("recipe_hash", "output_dir")}})
    for name in sorted(set(sides["blip_base"]) | set(sides["blip_large"])):
        base, large = sides["blip_base"].get(name), sides["blip_large"].get(name)
        if base != large:
            rows.append({"setting": name, "base": base, "large": large})
    frame = pd.DataFrame(rows, columns=["setting", "base", "large"])
    if profile == "demo":
        others = [s for s in frame["setting"] if not s.startswith("build.")]
        require(not others, f"the demo's BLIP base and large differ in more than their size: {others}")
    return frame


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
    configs: tuple[GridSetting, ...] = DECODING_GRID,
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

    Run directories are ``reports/runs/<run_prefix>_<model_name>_<setting.name>/``. ``limit`` keeps the
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
    for setting in configs:
        config = setting.config.replace(max_new_tokens=max_new_tokens)
        preds, speed = caption_split_with_speed(captioner, images, ids, config, batch_size=batch_size, warmup=warmup,
                                                repeats=repeats)
        name = f"{run_prefix}_{model_name}_{setting.name}"
        # `subset` tells notebook 08 to score the run on its own images instead of rejecting the
        # missing IDs as an official validator would.
        grid_row = {"name": setting.name, "num_beams": config.num_beams,
                    "no_repeat_ngram_size": config.no_repeat_ngram_size, "label": setting.label}
        run_meta = {"model": model_name, "decoding": grid_row, "max_new_tokens": max_new_tokens,
                    "subset": len(ids) < len(frame),
                    "batch_size": batch_size, "device": str(captioner.device), **speed, **(meta or {})}
        run_dir = write_run_dir(name, "captions", split, str(data_dir), preds, meta=run_meta)
        result = evaluate_captions(gt, preds, protocol=protocol, metrics=metrics, out_dir=run_dir)
        (Path(run_dir) / "decoding.json").write_text(json.dumps(run_meta, indent=2, default=str))
        rows.append({"model": model_name, "label": setting.label, "decoding": setting.name,
                     "num_beams": config.num_beams, "n_images": len(ids), **result["scores"],
                     **{k: speed[k] for k in ("captions_per_s", "captions_per_s_median", "captions_per_s_min",
                                              "captions_per_s_max", "timed_calls")},
                     "peak_mb": speed["peak_mb"],
                     "delta_mb": speed["delta_mb"], "run_dir": str(run_dir)})
    return pd.DataFrame(rows)
