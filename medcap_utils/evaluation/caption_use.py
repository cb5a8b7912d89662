"""Does a caption run use the image? Collapse counts and the shuffle check, for every caption run.

Two measurements per run, both needed because a caption that ignores the image still scores BLEU by
learning the corpus' phrasing:

* :func:`caption_counts` -- distinct captions / images and the share of the most common caption; a run
  giving one caption to :data:`COLLAPSED_SHARE` of its images or more is *collapsed*: labelled so
  wherever runs are compared, never ranked (notebooks 03, 06, 08 and REPORT.md all use this one rule);
* :func:`shuffle_drop` -- BLEU-4 and CIDEr (pycocoevalcap) of the run as written and with its captions
  moved to other images by a fixed-seed derangement: a model that ignores the image loses ~nothing.

:func:`caption_use_table` does both for every caption run under a runs folder, one PTB tokenizer
call (one Java start) per dataset split, so notebook 08 pays seconds, not a Java start per run;
:func:`caption_use_of_runs` does the same for a notebook's own runs (02-07 show it beside their scores) and
:func:`ranked_runs` leaves the collapsed ones out of a ranking, saying which.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from medcap_utils.evaluation.runfiles import RunFileError, read_run_dir, read_run_file

# Half: one caption on at least half the images means most of what the run "says" ignores the image;
# the issue-17 rule, stricter than the earlier 90% that let 190-of-200 runs be ranked.
COLLAPSED_SHARE = 0.5
COLLAPSED_NOTE = ("writes one caption for half of the images or more: it does not use the image, and a comparison "
                  "with such a run is not a result")
SHUFFLE_METRICS = {"Bleu_4": "BLEU-4", "CIDEr": "CIDEr"}
COLUMNS = ["run", "split", "images", "distinct captions", "distinct / images", "most common share", "collapsed",
           *[f"{t}{s}" for t in SHUFFLE_METRICS.values() for s in ("", " shuffled", " drop")]]


def is_collapsed(most_common_share: float) -> bool:
    """The one collapse rule: one caption for at least :data:`COLLAPSED_SHARE` of the images."""
    return bool(most_common_share >= COLLAPSED_SHARE)


def caption_counts(captions) -> dict:
    """images, distinct captions, distinct / images, most common share, collapsed (exact caption text)."""
    captions = list(captions)
    if not captions:
        return {"images": 0, "distinct captions": 0, "distinct / images": np.nan, "most common share": np.nan,
                "collapsed": False}
    counts = Counter(captions)
    share = max(counts.values()) / len(captions)
    return {"images": len(captions), "distinct captions": len(counts), "distinct / images": len(counts) / len(captions),
            "most common share": share, "collapsed": is_collapsed(share)}


def derangement(n: int, seed: int = 0) -> np.ndarray:
    """``source[i]``: the image whose caption image ``i`` gets; never ``i`` itself (n >= 2), so a run that
    copies the reference cannot keep one by chance. A random order, each image taking the next one's caption."""
    order = np.random.default_rng(seed).permutation(n)
    source = np.empty(n, dtype=int)
    source[order] = np.roll(order, -1)
    return source


def _scores(gts_tok: dict, res_tok: dict, ids: list) -> dict:
    """BLEU-4 and CIDEr, pycocoevalcap's own code on already tokenized text (as coco_evaluate runs it)."""
    from pycocoevalcap.cider.cider import Cider

    from medcap_utils.metrics.coco import _bleu

    bleu = _bleu(gts_tok, res_tok, ids)[0][3]
    cider = Cider().compute_score({k: gts_tok[k] for k in ids}, {k: res_tok[k] for k in ids})[0]
    return {"Bleu_4": float(bleu), "CIDEr": float(cider)}


def _drop_from_tokens(gts_tok: dict, res_tok: dict, ids: list, seed: int) -> dict:
    source = derangement(len(ids), seed)
    shuffled = {k: res_tok[ids[j]] for k, j in zip(ids, source)}
    original, moved = _scores(gts_tok, res_tok, ids), _scores(gts_tok, shuffled, ids)
    out = {}
    for metric, title in SHUFFLE_METRICS.items():
        out[title], out[f"{title} shuffled"] = original[metric], moved[metric]
        out[f"{title} drop"] = original[metric] - moved[metric]
    return out


def shuffle_drop(gts: dict, runs: dict, seed: int = 0) -> dict:
    """``{run: {BLEU-4, BLEU-4 shuffled, BLEU-4 drop, CIDEr, ...}}`` for references ``{id: str | [str]}``
    and runs ``{run: {id: caption}}`` (each on a subset of ``gts``' IDs); one tokenizer call for all."""
    from medcap_utils.metrics.coco import ptb_tokenize

    refs = {k: [v] if isinstance(v, str) else list(v) for k, v in gts.items()}
    hyps = {(run, k): c for run, captions in runs.items() for k, c in captions.items()}
    gts_tok, res_tok, _ = ptb_tokenize(refs, hyps)
    out = {}
    for run, captions in runs.items():
        ids = list(captions)
        out[run] = _drop_from_tokens(gts_tok, {k: res_tok[(run, k)] for k in ids}, ids, seed)
    return out


def _caption_runs(runs_root=None, run_dirs=None) -> dict:
    """``{(data_dir, split): {run: {id: caption}}}`` for every readable caption run under ``runs_root`` (or in
    ``run_dirs``, the folders themselves)."""
    groups: dict = {}
    run_jsons = (sorted(Path(runs_root).glob("*/run.json")) if run_dirs is None
                 else [Path(d) / "run.json" for d in run_dirs])
    for run_json in run_jsons:
        try:
            info, run_file = read_run_dir(run_json.parent)
            if info.get("task") != "captions":
                continue
            captions = read_run_file(run_file, "captions", valid_ids=None)
        except (RunFileError, FileNotFoundError, ValueError, KeyError):
            continue  # notebook 08's evaluation reports why such a run is invalid
        groups.setdefault((info.get("data_dir"), info.get("split")), {})[run_json.parent.name] = captions
    return groups


def caption_use_table(runs_root, seed: int = 0, shuffle: bool = True) -> pd.DataFrame:
    """One row per caption run: :func:`caption_counts` and, with ``shuffle`` and the references found,
    :func:`shuffle_drop` (NaN where the run's data_dir has no caption file for its split)."""
    return _use_table(_caption_runs(runs_root), seed, shuffle)


def caption_use_of_runs(runs, seed: int = 0, shuffle: bool = True, runs_root=None) -> pd.DataFrame:
    """:func:`caption_use_table`'s columns for the named caption runs only (notebooks 02-07 show their own runs
    beside their scores): ``runs`` are run folders, or names under ``runs_root`` (default: the reports' runs
    folder), one row each in the order given. A name with no readable caption run is an error, not a gap."""
    from medcap_utils.paths import reports_dir

    root = Path(runs_root) if runs_root is not None else reports_dir("runs")
    dirs = [Path(r) if Path(r).is_absolute() else root / r for r in runs]
    table = _use_table(_caption_runs(run_dirs=dirs), seed, shuffle)
    missing = [d.name for d in dirs if d.name not in set(table["run"])]
    if missing:
        raise FileNotFoundError(f"no readable caption run for {missing} under {root}")
    return table.set_index("run").loc[[d.name for d in dirs]].reset_index()


def describe(use: pd.DataFrame) -> pd.DataFrame:
    """Print the rule (a collapsed run is labelled, never ranked) and which of ``use``'s runs are collapsed; return
    ``use`` rounded for display (notebooks 02-07, beside their score tables)."""
    collapsed = list(use.loc[use["collapsed"].astype(bool), "run"])
    print(f"A run is labelled collapsed when it {COLLAPSED_NOTE}; it is not ranked. The 'drop' columns are the "
          "metric lost when the captions are moved to other images: near 0 means the captions ignore the image.")
    print(f"collapsed here: {', '.join(collapsed)}" if collapsed else "collapsed here: none")
    return use.round(4)


def ranked_runs(use: pd.DataFrame, runs) -> list:
    """``runs`` without the collapsed ones of ``use`` (a :func:`caption_use_of_runs` table), printing which were
    left out: a collapsed run is labelled, never ranked."""
    collapsed = set(use.loc[use["collapsed"].astype(bool), "run"])
    excluded = [r for r in runs if r in collapsed]
    print(f"left out of the ranking as collapsed ({COLLAPSED_NOTE}): {', '.join(excluded)}" if excluded
          else "no run collapsed: all ranked")
    return [r for r in runs if r not in collapsed]


def _use_table(groups: dict, seed: int, shuffle: bool) -> pd.DataFrame:
    from medcap_utils.data.rocov2 import read_captions, split_files
    from medcap_utils.paths import resolve

    rows = []
    for (data_dir, split), runs in groups.items():
        drops: dict = {}
        if shuffle and data_dir and split:
            gt_path = split_files(resolve(data_dir), split)["captions"]
            if gt_path.exists():
                frame = read_captions(gt_path)
                gts = dict(zip(frame.ID, frame.Caption))
                known = {r: c for r, c in runs.items() if set(c) <= set(gts)}
                drops = shuffle_drop(gts, known, seed) if known else {}
        for run, captions in runs.items():
            rows.append({"run": run, "split": split, **caption_counts(captions.values()), **drops.get(run, {})})
    return pd.DataFrame(rows, columns=COLUMNS).sort_values("run", ignore_index=True)
