"""What notebook 08 shows of its long metrics table: a short summary and figures that can be read.

``reports/tables/metrics.csv`` has one row per run x protocol x metric (hundreds of rows); the
notebook shows instead

* :func:`distinct_captions` -- per caption run, how many different captions it wrote and whether it is
  collapsed (:mod:`medcap_utils.evaluation.caption_use`'s one rule: one caption for half the images or more). A
  collapsed run does not use the image: it is labelled wherever runs are compared and never ranked;
* :func:`caption_summary` -- the best caption run of each notebook (:func:`medcap_utils.papers.run_group`)
  under a few headline metrics, one row per notebook, and :func:`concept_summary` for concept runs;
* :func:`plot_metric_heatmap` -- every run x the headline metrics, values printed in the cells;
* :func:`plot_best_runs` -- the summary's runs with their bootstrap 95% intervals, one panel per metric.

The full table stays in the CSV; every summary names its path.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from medcap_utils.evaluation.caption_use import COLLAPSED_NOTE, COLLAPSED_SHARE, caption_counts
from medcap_utils.evaluation.runfiles import RunFileError, read_run_dir, read_run_file
from medcap_utils.papers import run_group

# (protocol, metric) -> column title; ROUGE-1 is the ImageCLEF one (preprocessed text)
CAPTION_HEADLINE = {("coco", "Bleu_4"): "BLEU-4", ("coco", "ROUGE_L"): "ROUGE-L", ("coco", "CIDEr"): "CIDEr",
                    ("imageclef2024", "rouge1"): "ROUGE-1 (ImageCLEF)"}
CONCEPT_HEADLINE = {("imageclef_concepts", "f1_primary"): "F1 primary",
                    ("imageclef_concepts", "f1_secondary"): "F1 secondary"}
RANK_BY = "ROUGE-1 (ImageCLEF)"  # the metric the papers and notebook 04 pick the best decoding by
__all__ = ["COLLAPSED_NOTE", "COLLAPSED_SHARE", "distinct_captions", "caption_summary", "concept_summary"]


def distinct_captions(runs_root) -> pd.DataFrame:
    """One row per caption run under ``runs_root``: images, distinct captions, the share of images
    given the most common caption, and ``collapsed``: one caption for at least
    :data:`~medcap_utils.evaluation.caption_use.COLLAPSED_SHARE` of them."""
    rows = []
    for run_json in sorted(Path(runs_root).glob("*/run.json")):
        try:
            info, run_file = read_run_dir(run_json.parent)
            if info.get("task") != "captions":
                continue
            captions = list(read_run_file(run_file, "captions", valid_ids=None).values())
        except (RunFileError, FileNotFoundError, ValueError, KeyError):
            continue
        counts = caption_counts(captions)
        rows.append({"run": run_json.parent.name, **{k: counts[k] for k in
                                                     ("images", "distinct captions", "most common share",
                                                      "collapsed")}})
    return pd.DataFrame(rows, columns=["run", "images", "distinct captions", "most common share", "collapsed"])


def wide(table: pd.DataFrame, headline: dict) -> pd.DataFrame:
    """Runs x headline metrics (values of status ok/partial), columns titled as in ``headline``."""
    ok = table[table.status.isin(["ok", "partial"])].dropna(subset=["value"])
    keys = list(zip(ok.protocol, ok.metric))
    part = ok[[k in headline for k in keys]]
    if part.empty:
        return pd.DataFrame(columns=list(headline.values()))
    part = part.assign(column=[headline[k] for k in zip(part.protocol, part.metric)])
    frame = part.pivot_table(index="run", columns="column", values="value", aggfunc="first")
    return frame.reindex(columns=[c for c in headline.values() if c in frame.columns])


def _label(run: str, table: pd.DataFrame) -> str:
    rows = table[(table.run == run) & (table.status == "ok")]
    if rows.empty:
        return run
    split, note = rows.split.iloc[0], " ".join(rows.note.dropna().astype(str).unique())
    subset = f", {rows.n.iloc[0]} images" if "subset" in note else ""
    return f"{run} ({split}{subset})"


def caption_summary(table: pd.DataFrame, distinct: pd.DataFrame, csv_path=None) -> pd.DataFrame:
    """The best caption run of each notebook by :data:`RANK_BY` among its runs that are not collapsed
    (a notebook whose runs are all collapsed gets a row saying so, without scores); columns: notebook, run, runs in
    the group (how many collapsed),
    distinct captions of the shown run, the headline metrics. ``attrs['note']`` says what to read
    into it, with ``csv_path``; ``attrs['runs']`` lists the runs shown."""
    values = wide(table, CAPTION_HEADLINE)
    if values.empty:
        return pd.DataFrame()
    info = (distinct.set_index("run") if len(distinct)
            else pd.DataFrame(columns=["images", "distinct captions", "collapsed"]))
    rows, shown_runs = [], []
    for group in sorted({run_group(r) for r in values.index}, key=lambda g: g.order):
        runs = [r for r in values.index if run_group(r) == group]
        collapsed = [r for r in runs if r in info.index and bool(info.loc[r, "collapsed"])]
        candidates = [r for r in runs if r not in collapsed]
        if not candidates:  # a collapsed run is never ranked, not even as the best of a bad lot
            rows.append({"notebook": group.label, "best run": f"none: all {len(runs)} runs collapsed",
                         "runs (collapsed)": f"{len(runs)} ({len(collapsed)})", "distinct captions": "-"})
            continue
        ranked = values.loc[candidates].sort_values(RANK_BY, ascending=False, na_position="last")
        best = ranked.index[0]
        shown_runs.append(best)
        shown = f"{info.loc[best, 'distinct captions']} of {info.loc[best, 'images']}" if best in info.index else "?"
        rows.append({"notebook": group.label, "best run": _label(best, table),
                     "runs (collapsed)": f"{len(runs)} ({len(collapsed)})", "distinct captions": shown,
                     **values.loc[best].round(4).to_dict()})
    summary = pd.DataFrame(rows)
    n_collapsed = int(distinct["collapsed"].sum()) if len(distinct) else 0
    note = (f"Best caption run per notebook by {RANK_BY}, among runs that are not collapsed (one caption for "
            f"{COLLAPSED_SHARE:.0%} of the images or more); collapsed runs are skipped, never ranked. Every run and "
            f"metric: {csv_path or 'the metrics table'}.")
    if n_collapsed:
        names = ", ".join(distinct.loc[distinct["collapsed"], "run"])
        runs_word = "run" if n_collapsed == 1 else "runs"
        note += f"\nSkipped as collapsed, {n_collapsed} {runs_word} ({names}): each {COLLAPSED_NOTE}."
    summary.attrs["note"] = note
    summary.attrs["runs"] = shown_runs
    return summary


def concept_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Concept runs with their official F1s (one row per run, a handful at most)."""
    values = wide(table, CONCEPT_HEADLINE)
    if values.empty:
        return pd.DataFrame()
    return values.round(4).reset_index().rename(columns={"run": "concept run"})


def plot_metric_heatmap(table: pd.DataFrame, distinct: pd.DataFrame | None = None, path=None):
    """Every caption run (rows, grouped by notebook) x the headline metrics (columns), each value
    printed in its cell; the colour is the value relative to the best run of that column, so
    metrics on different scales share one colour bar. Collapsed runs are marked. Returns the figure (or None when
    nothing was scored)."""
    import matplotlib.pyplot as plt

    from medcap_utils.plotting import add_colorbar, fig_width

    values = wide(table, CAPTION_HEADLINE)
    if values.empty:
        return None
    runs = sorted(values.index, key=lambda r: (run_group(r).order, r))
    values = values.loc[runs]
    collapsed = set(distinct.loc[distinct["collapsed"], "run"]) if distinct is not None and len(distinct) else set()
    relative = values / values.max(axis=0).replace(0, np.nan)
    fig, ax = plt.subplots(figsize=(fig_width(9.5), 0.27 * len(runs) + 1.3), layout="constrained")
    image = ax.imshow(relative.to_numpy(dtype=float), cmap="viridis", vmin=0, vmax=1, aspect="auto")
    for i in range(len(runs)):
        for j in range(values.shape[1]):
            v = values.iat[i, j]
            if np.isfinite(v):
                dark = relative.iat[i, j] < 0.6 if np.isfinite(relative.iat[i, j]) else True
                ax.text(j, i, f"{v:.3f}", ha="center", va="center", fontsize=7, color="white" if dark else "black")
    ax.set_xticks(range(values.shape[1]), values.columns, fontsize=8)
    ax.xaxis.tick_top()
    labels = [f"{r}  [collapsed]" if r in collapsed else r for r in runs]
    ax.set_yticks(range(len(runs)), labels, fontsize=7)
    for tick, run in zip(ax.get_yticklabels(), runs):
        if run in collapsed:
            tick.set_color("firebrick")
    groups = [run_group(r).label for r in runs]
    for i in range(1, len(runs)):
        if groups[i] != groups[i - 1]:
            ax.axhline(i - 0.5, color="white", lw=2)
    add_colorbar(fig, image, ax, "value / best run's value in that column")
    ax.set_title("caption runs x headline metrics (rows grouped by notebook; red: collapsed, one caption for half "
                 "the images or more)",
                 fontsize=9)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig


def plot_best_runs(table: pd.DataFrame, runs: list[str], path=None):
    """One panel per headline metric: the given runs (e.g. the summary's, one per notebook) as
    horizontal bars with their bootstrap 95% intervals, one colour per run
    (:func:`medcap_utils.plotting.run_palette`), labelled on the axis so no legend covers a bar."""
    import matplotlib.pyplot as plt

    from medcap_utils.plotting import fig_width, run_palette

    ok = table[table.status.isin(["ok", "partial"]) & table.run.isin(runs)]
    metrics = [(p, m) for (p, m) in CAPTION_HEADLINE if ((ok.protocol == p) & (ok.metric == m)).any()]
    if not metrics or not runs:
        return None
    colours = run_palette(table.run.unique())
    order = sorted(runs, key=lambda r: (run_group(r).order, r))
    fig, axes = plt.subplots(1, len(metrics), figsize=(fig_width(2.6 * len(metrics) + 2.2), 0.32 * len(order) + 1.2),
                             sharey=True, squeeze=False, layout="constrained")
    for ax, (protocol, metric) in zip(axes[0], metrics):
        part = ok[(ok.protocol == protocol) & (ok.metric == metric)].set_index("run").reindex(order)
        y = np.arange(len(order))
        low = (part.value - part.ci_low).clip(lower=0).fillna(0).to_numpy(dtype=float)
        high = (part.ci_high - part.value).clip(lower=0).fillna(0).to_numpy(dtype=float)
        ax.barh(y, part.value.fillna(0), xerr=np.vstack([low, high]), capsize=2, color=[colours[r] for r in order],
                edgecolor="0.3", lw=0.5)
        ax.set_title(CAPTION_HEADLINE[(protocol, metric)], fontsize=9)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("score (bar: mean; whisker: 95% CI)", fontsize=7)
    axes[0, 0].set_yticks(np.arange(len(order)), order, fontsize=7)
    axes[0, 0].invert_yaxis()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig
