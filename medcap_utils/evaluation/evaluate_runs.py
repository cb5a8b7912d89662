"""Evaluate every run directory under ``reports/runs/`` and tabulate the results (notebook 08).

A run directory (written by :func:`medcap_utils.evaluation.runfiles.write_run_dir`) holds ``run.json`` naming
task, split and data_dir, and the ImageCLEF run file. Caption runs are scored under the COCO
protocol and both ImageCLEF protocols; concept runs with the official F1s. Each evaluation's files go
to ``<run>/eval_<protocol>/``; one long table (run, protocol, metric, value, CI, status, note)
collects everything, including the metrics that are unavailable and why.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from medcap_utils.data.rocov2 import image_source, read_captions, read_concepts, split_files, split_frame
from medcap_utils.evaluation.baselines import (
    consensus_caption,
    most_frequent_caption,
    nearest_neighbour_captions,
    pixel_features,
    top_k_concepts,
)
from medcap_utils.evaluation.evaluate import evaluate_captions, evaluate_concepts
from medcap_utils.evaluation.runfiles import RunFileError, read_run_dir, read_run_file, write_run_dir
from medcap_utils.metrics.bootstrap import paired_bootstrap
from medcap_utils.paths import resolve

COLUMNS = ["run", "task", "split", "protocol", "metric", "value", "ci_low", "ci_high", "n", "status", "note"]


def make_baseline_runs(data_dir: str, split: str = "test", k: int = 3, runs_root=None, retrieval: bool = True,
                       pixel_size: int = 16, cache_size: int = 64, encoder_dir=None) -> list[Path]:
    """Baseline runs on ``split``, statistics from the train split only: the most frequent and the consensus
    caption, top-k concepts and, with ``retrieval``, the caption of the nearest training image by pixels
    (:func:`medcap_utils.evaluation.baselines.pixel_features` at ``pixel_size`` px from the ``cache_size`` px image
    cache) and, with ``encoder_dir`` (a saved pretrained encoder, e.g. the demo's general-domain stand-in), by that
    encoder's features (:mod:`medcap_utils.evaluation.encoder_features`, cosine). A missing ``encoder_dir`` is said,
    not replaced by another encoder."""
    root = resolve(data_dir)
    train, target = split_files(root, "train"), split_files(root, split)
    ids = list(read_captions(target["captions"]).ID)
    train_df = read_captions(train["captions"])
    caption = most_frequent_caption(train_df.Caption)
    concepts = top_k_concepts(split_frame(root, "train")["cuis"], k)  # manual concepts where the source has no others
    meta = {"baseline": True, "statistics_from": "train"}
    dirs = [write_run_dir("baseline-most-frequent-caption", "captions", split, data_dir, {i: caption for i in ids},
                          {**meta, "caption": caption}, runs_root),
            write_run_dir(f"baseline-top{k}-concepts", "concepts", split, data_dir, {i: concepts for i in ids},
                          {**meta, "k": k, "concepts": concepts}, runs_root)]
    if retrieval:
        consensus = consensus_caption(train_df.Caption)
        dirs.append(write_run_dir("baseline-consensus-caption", "captions", split, data_dir,
                                  {i: consensus for i in ids},
                                  {**meta, "caption": consensus, "similarity": "mean token F1 against <= 500 "
                                   "training captions (seed 0)"}, runs_root))
        train_ids, train_x = pixel_features(data_dir, "train", pixel_size, cache_size)
        test_ids, test_x = pixel_features(data_dir, split, pixel_size, cache_size)
        by_id = dict(zip(train_df.ID, train_df.Caption))
        found = dict(zip(test_ids, nearest_neighbour_captions(train_x, [by_id[i] for i in train_ids], test_x)))
        dirs.append(write_run_dir("baseline-nn-pixels", "captions", split, data_dir, {i: found[i] for i in ids},
                                  {**meta, "features": f"RGB pixels averaged to {pixel_size} px from the "
                                   f"{cache_size} px image cache", "distance": "l2"}, runs_root))
        if encoder_dir:
            dirs += _encoder_nn_run(data_dir, split, ids, by_id, encoder_dir, meta, runs_root)
    return dirs


def _encoder_nn_run(data_dir, split: str, ids: list, by_id: dict, encoder_dir, meta: dict, runs_root) -> list[Path]:
    """The nearest-neighbour run by a pretrained encoder's features, or ``[]`` with a printed reason."""
    from medcap_utils.evaluation.encoder_features import encoder_features

    folder = resolve(encoder_dir)
    if not (folder / "config.json").exists():
        print(f"baseline-nn-encoder not written: no encoder at {folder} (the demo builds it with `medcap standins`)")
        return []
    train_ids, train_x = encoder_features(data_dir, "train", folder)
    test_ids, test_x = encoder_features(data_dir, split, folder)
    found = dict(zip(test_ids, nearest_neighbour_captions(train_x, [by_id[i] for i in train_ids], test_x,
                                                          metric="cosine")))
    return [write_run_dir("baseline-nn-encoder", "captions", split, data_dir, {i: found[i] for i in ids},
                          {**meta, "features": f"mean last hidden state / pooled features of {encoder_dir}",
                           "distance": "cosine"}, runs_root)]


def _rows(run: str, info: dict, protocol: str, result: dict, subset_of: int | None = None) -> list[dict]:
    rows = []
    subset_note = f"subset: {len(result['per_image'])} of {subset_of} images" if subset_of else ""
    notes = result["provenance"].get("notes", {})
    for metric, value in result["scores"].items():
        ci = result["ci"].get(metric, {})
        note = notes.get(metric, {}).get("note", "") if isinstance(notes.get(metric), dict) else ""
        rows.append({"run": run, "task": info["task"], "split": info["split"], "protocol": protocol, "metric": metric,
                     "value": value, "ci_low": ci.get("low", np.nan), "ci_high": ci.get("high", np.nan),
                     "n": ci.get("n", len(result["per_image"])),
                     "status": "partial" if metric.endswith("_partial") else "ok",
                     "note": "; ".join(n for n in (note, subset_note) if n)})
    for metric, reason in result["unavailable"].items():
        rows.append({"run": run, "task": info["task"], "split": info["split"], "protocol": protocol, "metric": metric,
                     "value": np.nan, "ci_low": np.nan, "ci_high": np.nan, "n": 0, "status": "unavailable",
                     "note": reason})
    return rows


def evaluate_run_dir(run_dir, protocols=("coco", "imageclef2024", "imageclef2025"), n_boot: int = 1000,
                     seed: int = 0, clip_model: str | None = None, metrics=None) -> tuple[list[dict], dict]:
    """Validate and score one run directory; returns (table rows, {protocol: per-image DataFrame})."""
    run_dir = Path(run_dir)
    info, run_file = read_run_dir(run_dir)
    files = split_files(resolve(info["data_dir"]), info["split"])
    per_image = {}
    if info["task"] == "captions":
        gt_df = read_captions(files["captions"])
        gt = dict(zip(gt_df.ID, gt_df.Caption))
        # A run declared as covering a subset of the split (e.g. the demo decoding grid) is scored on
        # its own images; anything else must cover the whole split, as the official checker demands.
        subset = bool(info.get("meta", {}).get("subset"))
        pred = read_run_file(run_file, "captions", valid_ids=gt, require_all=not subset)
        gt = {i: gt[i] for i in pred}
        root = resolve(info["data_dir"])
        images = {i: image_source(root, info["split"], i) for i in gt}
        has_images = files["images_dir"].is_dir() or files["images_zip"].exists()
        rows = []
        for protocol in protocols:
            result = evaluate_captions(gt, pred, protocol=protocol, metrics=metrics,
                                       images=images if has_images else None, bootstrap=n_boot, seed=seed,
                                       out_dir=run_dir / f"eval_{protocol}", clip_model=clip_model)
            rows += _rows(run_dir.name, info, protocol, result, subset_of=len(gt_df) if subset else None)
            per_image[protocol] = result["per_image"]
        return rows, per_image
    source = files["concepts"].name
    if files["concepts"].exists():
        gt_df = read_concepts(files["concepts"])
        gt = dict(zip(gt_df.ID, gt_df.CUIs))
    else:  # a subset of the HF copy: its manual concepts stand in, and every row says so
        frame = split_frame(resolve(info["data_dir"]), info["split"])
        source = frame.attrs["concepts_source"]
        if source == files["concepts"].name:
            raise FileNotFoundError(f"{files['concepts']}: no ground truth for concept run {run_dir.name}")
        gt = dict(zip(frame["id"], frame["cuis"]))
    manual = None
    if files["concepts_manual"].exists():
        m_df = read_concepts(files["concepts_manual"])
        manual = dict(zip(m_df.ID, m_df.CUIs))
    pred = read_run_file(run_file, "concepts", valid_ids=gt)
    result = evaluate_concepts(gt, pred, gt_manual=manual, bootstrap=n_boot, seed=seed,
                               out_dir=run_dir / "eval_concepts")
    per_image["concepts"] = result["per_image"]
    rows = _rows(run_dir.name, info, "imageclef_concepts", result)
    if source != files["concepts"].name:
        for row in rows:
            row["note"] = "; ".join(n for n in (row["note"], f"ground truth: {source}") if n)
    return rows, per_image


def evaluate_all_runs(runs_root="reports/runs", **kwargs) -> tuple[pd.DataFrame, dict]:
    """Score every ``<runs_root>/*/run.json``; a run that fails validation becomes a row saying why."""
    rows, per_image = [], {}
    for run_json in sorted(Path(resolve(runs_root)).glob("*/run.json")):
        run_dir = run_json.parent
        try:
            run_rows, per = evaluate_run_dir(run_dir, **kwargs)
        except (RunFileError, FileNotFoundError, KeyError, ValueError) as err:
            run_rows, per = [{"run": run_dir.name, "task": "?", "split": "?", "protocol": "-", "metric": "-",
                              "value": np.nan, "ci_low": np.nan, "ci_high": np.nan, "n": 0, "status": "invalid",
                              "note": str(err)[:300]}], {}
        rows += run_rows
        per_image[run_dir.name] = per
    return pd.DataFrame(rows, columns=COLUMNS), per_image


def paired_against(per_image: dict, baseline: str, protocol: str = "coco", metric: str = "rouge1",
                   n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Paired bootstrap of ``metric`` between every caption run and ``baseline`` on the same images."""
    rows = []
    base = per_image.get(baseline, {}).get(protocol)
    if base is None or metric not in base:
        return pd.DataFrame(columns=["run", "baseline", "metric", "diff", "low", "high", "p_value"])
    for run, tables in per_image.items():
        table = tables.get(protocol)
        if run == baseline or table is None or metric not in table or list(table.ID) != list(base.ID):
            continue
        test = paired_bootstrap(table[metric].to_numpy(), base[metric].to_numpy(), n_boot, seed)
        rows.append({"run": run, "baseline": baseline, "metric": f"{protocol}:{metric}", **test})
    return pd.DataFrame(rows, columns=["run", "baseline", "metric", "diff", "low", "high", "p_value"])
