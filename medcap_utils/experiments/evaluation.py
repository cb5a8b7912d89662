"""Notebook ``08_evaluation``'s steps: write the baseline runs, score every run under the requested protocols with
bootstrap intervals, tabulate the caption runs (distinct captions, collapse, the shuffle check) and test each run
against the most frequent caption image by image.

The scoring is :mod:`medcap_utils.evaluation.evaluate_runs`, the tables :mod:`medcap_utils.evaluation.run_summary`
and :mod:`medcap_utils.evaluation.caption_use`; this module holds the order the notebook runs them in and what it
prints and saves (``reports/tables/metrics.csv`` and the ``08_*`` tables).
"""
from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
from IPython.display import display

from medcap_utils.display import show_full
from medcap_utils.evaluation import caption_use, evaluate_runs, run_summary
from medcap_utils.paths import reports_dir, resolve
from medcap_utils.report import save_table

#: the run every other caption run is tested against, image by image (paired bootstrap of ROUGE-1)
PAIRED_BASELINE, PAIRED_PROTOCOL, PAIRED_METRIC = "baseline-most-frequent-caption", "coco", "rouge1"
#: the columns of the caption-use table the notebook shows (all of them are in 08_caption_use.csv)
CAPTION_USE_COLUMNS = ["run", "split", "images", "distinct captions", "most common share", "collapsed", "BLEU-4",
                       "BLEU-4 drop", "CIDEr", "CIDEr drop"]
CAPTION_USE_SHOWN = 40


def baseline_runs(data_dir: str, runs: Path, make: bool, split: str, top_k: int, retrieval: bool, pixel_size: int,
                  cache_size: int, encoder_dir: str = "") -> list[str]:
    """Write the baseline runs into ``runs`` (when asked and the data is there), then name every run to score."""
    baselines = []
    if make and (resolve(data_dir) / "train_captions.csv").exists():
        baselines = evaluate_runs.make_baseline_runs(data_dir, split, top_k, runs, retrieval=retrieval,
                                                     pixel_size=pixel_size, cache_size=cache_size,
                                                     encoder_dir=encoder_dir or None)
    print("baseline runs:", [p.name for p in baselines])
    run_dirs = sorted(p.parent.name for p in runs.glob("*/run.json"))
    print(len(run_dirs), "run(s) to evaluate:", run_dirs)
    return run_dirs


def score_runs(runs: Path, protocols, n_boot: int, seed: int, clip_model: str):
    """Every run of ``runs`` scored: ``(table, per_image, path)``, the long table also written to
    ``reports/tables/metrics.csv``."""
    start = time.time()
    table, per_image = evaluate_runs.evaluate_all_runs(runs, protocols=tuple(protocols), n_boot=n_boot, seed=seed,
                                                       clip_model=clip_model)
    out_csv = reports_dir("tables") / "metrics.csv"
    table.to_csv(out_csv, index=False)
    print(f"{len(table)} rows -> {out_csv} in {time.time() - start:.0f} s")
    return table, per_image, out_csv


def summarise(table: pd.DataFrame, runs: Path, out_csv: Path):
    """The caption runs' distinct captions (``08_distinct_captions``), the wide table of every scored run
    (``08_metrics_wide``) and the one-row-per-notebook summary (``08_summary``, shown): ``(distinct, summary)``."""
    available = table[table.status.isin(["ok", "partial"])]
    distinct = run_summary.distinct_captions(runs)
    save_table(distinct, "08_distinct_captions")
    summary = run_summary.caption_summary(table, distinct, csv_path=out_csv)
    if available.empty:
        print("no runs scored: write runs with medcap_utils.evaluation.runfiles.write_run_dir (notebooks 02-07)")
    else:
        wide_csv = save_table(available.pivot_table(index="run", columns=["protocol", "metric"], values="value"),
                              "08_metrics_wide", index=True)
        print(f"{available.run.nunique()} runs x {available[['protocol', 'metric']].drop_duplicates().shape[0]} "
              f"metrics: {out_csv} (long), {wide_csv} (one row per run)")
    if len(summary):
        save_table(summary, "08_summary")
        print(summary.attrs["note"])
        show_full(summary)
    return distinct, summary


def show_caption_use(runs: Path, seed: int) -> None:
    """Distinct captions, the most common caption's share and BLEU-4/CIDEr with the captions shuffled across images,
    per caption run (``08_caption_use``); the best non-collapsed runs are shown."""
    start = time.time()
    use = caption_use.caption_use_table(runs, seed=seed)
    use_csv = save_table(use, "08_caption_use")
    shown = use.sort_values(["collapsed", "CIDEr"], ascending=[True, False]).head(CAPTION_USE_SHOWN)
    print(f"{len(use)} caption runs, {int(use['collapsed'].sum())} collapsed; shuffle check in "
          f"{time.time() - start:.1f} s ({use_csv}{'' if len(use) <= len(shown) else f'; {len(shown)} shown'})")
    show_full(shown[CAPTION_USE_COLUMNS].round(3))


def show_paired_tests(per_image: pd.DataFrame, collapsed: pd.DataFrame, n_boot: int, seed: int) -> None:
    """Each caption run minus :data:`PAIRED_BASELINE` on the same images (paired bootstrap), written to
    ``reports/tables/08_paired_tests.csv`` and shown with whether the run is collapsed."""
    paired = evaluate_runs.paired_against(per_image, PAIRED_BASELINE, PAIRED_PROTOCOL, PAIRED_METRIC, n_boot, seed)
    paired.to_csv(reports_dir("tables") / "08_paired_tests.csv", index=False)
    if len(paired):
        print(f"per-image ROUGE-1, each run minus {paired['baseline'].iloc[0]} on the same images "
              "(reports/tables/08_paired_tests.csv)")
        display(paired.drop(columns=["baseline", "metric"]).assign(collapsed=paired["run"].isin(collapsed["run"]))
                .round(4))
    else:
        print("no other caption run on the baseline's images yet")
