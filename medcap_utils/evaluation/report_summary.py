"""The summary per paper at the top of ``reports/REPORT.md`` (notebook 09).

For each seed paper (:data:`medcap_utils.papers.PAPERS`): its claim, what this run measured (read
from the tables and run files the notebooks wrote, never typed in), whether the run can show the
paper's effect and why not where it cannot (a model that writes the same few captions for every
image does not use the image), and what the ``rocov2`` profile runs instead. Used by
:func:`medcap_utils.evaluation.report_markdown.build_markdown_report`.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from medcap_utils.evaluation.caption_use import COLLAPSED_SHARE
from medcap_utils.evaluation.run_summary import distinct_captions
from medcap_utils.papers import PAPERS, Paper, citation

REAL_RUN = "make reproduce PROFILE=rocov2 DATA=/path/to/rocov2"


class _Run:
    """What one reports folder holds: its tables by name and the distinct captions of its runs."""

    def __init__(self, reports: Path):
        self.reports = Path(reports)
        self._tables: dict[str, pd.DataFrame | None] = {}
        runs = self.reports / "runs"
        self.distinct = distinct_captions(runs).set_index("run") if runs.is_dir() else pd.DataFrame()

    def table(self, name: str) -> pd.DataFrame | None:
        if name not in self._tables:
            path = self.reports / "tables" / f"{name}.csv"
            self._tables[name] = pd.read_csv(path) if path.exists() else None
        return self._tables[name]

    def row(self, name: str, column: str, value) -> pd.Series | None:
        frame = self.table(name)
        if frame is None or column not in frame:
            return None
        match = frame[frame[column] == value]
        return None if match.empty else match.iloc[0]

    def captions(self, run: str) -> tuple[int, int, bool] | None:
        """(distinct captions, images, collapsed) of a run folder, None when it is not there."""
        if run not in self.distinct.index:
            return None
        row = self.distinct.loc[run]
        return int(row["distinct captions"]), int(row["images"]), bool(row["collapsed"])


def collapsed_run(counts: tuple[int, int, bool] | None) -> bool:
    """True when a run is collapsed (caption_use's one rule), so it does not use the image."""
    return counts is not None and counts[2]


def _count(counts: tuple[int, int] | None) -> str:
    if not counts:
        return "run folder not found"
    return f"{counts[0]} distinct captions for {counts[1]} images" + (", collapsed" if counts[2] else "")


def _shuffled(run: _Run, runs: tuple[str, ...]) -> str:
    """The image-use check of notebook 08 (08_caption_use.csv) for the first of ``runs`` it has, as text."""
    for name in runs:
        row = run.row("08_caption_use", "run", name)
        if row is not None and "CIDEr shuffled" in row and pd.notna(row["CIDEr shuffled"]):
            return (f"; CIDEr {_fmt(row['CIDEr'])}, {_fmt(row['CIDEr shuffled'])} with its captions shuffled across "
                    f"images (a model that ignores the image loses about nothing)")
    return ""


def _fmt(value) -> str:
    return "n/a" if value is None or pd.isna(value) else f"{float(value):.3f}"


def _against_floor(run: _Run, table: str, column: str, ours: str, floor: str, metric: str, runs: tuple[str, ...]):
    """(our row, the floor's ``metric``, our run's caption counts, whether ours beats the floor with
    captions that vary); the first of ``runs`` (the demo's and the rocov2 profile's names) found counts."""
    row, base = run.row(table, column, ours), run.row(table, column, floor)
    counts = next((c for c in map(run.captions, runs) if c), None)
    value = None if base is None else base[metric]
    learns = row is not None and value is not None and row[metric] > value and not collapsed_run(counts)
    return row, value, counts, learns


def _blip_2q2t(run: _Run) -> tuple[str, str]:
    measured, verdict = [], []
    tuned, floor, counts, learns = _against_floor(run, "02_blip_test", "model", "2Q2T base (fine-tuned)",
                                                  "most frequent caption", "BLEU-4",
                                                  ("blip_demo_test", "blip-2q2t-base-test"))
    if tuned is not None:
        measured.append(f"notebook 02, BLIP trained with the 2Q2T recipe: test BLEU-4 {_fmt(tuned['BLEU-4'])} "
                        "(the most "
                        f"frequent training caption: {_fmt(floor)}), {_count(counts)}"
                        + _shuffled(run, ("blip_demo_test", "blip-2q2t-base-test")))
        verdict.append("the fine-tuning learns captions that depend on the image" if learns else
                       "the fine-tuned model does not beat the most frequent caption or barely uses the image")
    grid = run.table("04_decoding_grid")
    if grid is not None and {"model", "decoding", "rouge1"} <= set(grid.columns):
        parts, shows = [], []
        for model, part in grid.groupby("model", sort=False):
            greedy = part[part["decoding"] == "greedy"]
            beams = part[part["decoding"] != "greedy"]
            if greedy.empty or beams.empty:
                continue
            best = beams.loc[beams["rouge1"].idxmax()]
            runs_of = [run.captions(f"decoding_{model}_{d}") for d in part["decoding"]]
            collapsed = [c for c in runs_of if collapsed_run(c)]
            parts.append(f"{model} greedy {_fmt(greedy['rouge1'].iloc[0])} -> best beam {_fmt(best['rouge1'])} "
                         f"({best['decoding']})"
                         + (f", {len(collapsed)} of {len(runs_of)} settings are collapsed" if collapsed else ""))
            shows.append((model, best["rouge1"] > greedy["rouge1"].iloc[0], bool(collapsed)))
        if parts:
            n = int(grid["n_images"].iloc[0]) if "n_images" in grid else None
            measured.append(f"notebook 04 ({n} validation images), ImageCLEF ROUGE-1: " + "; ".join(parts))
            for model, better, collapsed in shows:
                verdict.append(f"{model} cannot show the decoding effect (collapsed under some settings)"
                               if collapsed else
                               f"for {model} the best beam {'beats' if better else 'does not beat'} greedy")
            verdict.append("the demo's 'large' is notebook 02's longer-trained model, not BLIP-large, "
                           "so base vs large is "
                           "not the paper's comparison")
    return "; ".join(measured), "; ".join(verdict)


def _medblip(run: _Run) -> tuple[str, str]:
    table = run.table("03_medblip_comparison")
    if table is None:
        return "", ""
    names = {"blip_full": "full", "blip_decoder_only": "decoder-only", "blip_encoder_only": "encoder-only",
             "blip_zero_shot": "zero-shot stand-in"}
    rows = {k: run.row("03_medblip_comparison", "model", k) for k in names}
    counts = {k: run.captions(f"medblip_{k}") for k in names}
    scores = [f"{label} {_fmt(rows[k]['rouge1'])} ({_count(counts[k])})" for k, label in names.items()
              if rows[k] is not None]
    measured = "notebook 03, test ImageCLEF ROUGE-1: " + "; ".join(scores)
    times = run.row("03_medblip_training_time", "variant", "decoder_only")
    if times is not None and "time_vs_full" in times:
        measured += f"; decoder-only trained in {float(times['time_vs_full']):.2f}x the full fine-tuning's time"
    compared = [k for k in ("blip_full", "blip_decoder_only", "blip_encoder_only") if rows[k] is not None]
    collapsed = [names[k] for k in compared if collapsed_run(counts[k])]
    if collapsed:
        verdict = (f"cannot show which fine-tuning is best: {', '.join(collapsed)} write one caption "
                   f"for {COLLAPSED_SHARE:.0%} of the images or more (collapsed), so they do not use the image yet "
                   "and their ranking is not a result")
    elif compared:
        best = max(compared, key=lambda k: rows[k]["rouge1"])
        verdict = f"{names[best]} scores best" + (" (as the paper says)" if best == "blip_full"
                                                  else " (the paper: full)")
    else:
        verdict = "no variant was scored"
    if times is not None and "time_vs_full" in times:
        ratio = float(times["time_vs_full"])
        verdict += (f"; decoder-only saves training time ({ratio:.2f}x full; paper about 0.95x)" if ratio < 1 else
                    f"; decoder-only saved no time here ({ratio:.2f}x full)")
    return measured, verdict


def _uit_oggy(run: _Run) -> tuple[str, str]:
    measured, verdict = [], []
    scores = run.table("05_medcsra_scores")
    if scores is not None and {"split", "system", "f1_primary"} <= set(scores.columns):
        test = scores[scores["split"] == "test"]
        ours = test[test["system"].str.startswith("MedCSRA")]
        floor = test[~test["system"].str.startswith("MedCSRA")]
        if len(ours) and len(floor):
            o, f = ours.iloc[0], floor.iloc[0]
            measured.append(f"notebook 05, test concept F1: MedCSRA primary {_fmt(o['f1_primary'])}, secondary "
                            f"{_fmt(o.get('f1_secondary'))}; {f['system']} baseline primary {_fmt(f['f1_primary'])}")
            verdict.append("MedCSRA detects the demo's concepts far better than the frequency baseline"
                           if o["f1_primary"] > f["f1_primary"]
                           else "MedCSRA does not beat the frequency baseline here")
    tuned = run.row("02_blip_test", "model", "UIT-Oggy large (fine-tuned)")
    counts = run.captions("blip_demo_test_uit_oggy") or run.captions("blip-uit-oggy-large-test")
    if tuned is not None:
        measured.append(f"notebook 02, BLIP with the UIT-Oggy recipe: test BLEU-4 {_fmt(tuned['BLEU-4'])}, "
                        f"{_count(counts)}"
                        + _shuffled(run, ("blip_demo_test_uit_oggy", "blip-uit-oggy-large-test")))
        verdict.append("its 2-epoch captioner is collapsed, so its caption scores say little"
                       if collapsed_run(counts) else
                       f"its captioner is not collapsed ({_count(counts)}); the shuffle check above says how much "
                       "of its score depends on the image")
    return "; ".join(measured), "; ".join(verdict)


def _msmedcap(run: _Run) -> tuple[str, str]:
    names = {"BLIP2-like (CLIP only)": "06_msmedcap_blip2", "SAM-BLIP2 (SAM only)": "06_msmedcap_sam_blip2",
             "MSMedCap (CLIP + SAM)": "06_msmedcap_dual"}
    rows = {k: run.row("06_variants", "model", k) for k in names}
    present = [k for k in names if rows[k] is not None]
    if not present:
        return "", ""
    counts = {k: run.captions(names[k]) for k in present}
    measured = "notebook 06, test BLEU-1 / CIDEr: " + "; ".join(
        f"{k} {_fmt(rows[k]['Bleu_1'])} / {_fmt(rows[k]['CIDEr'])} ({_count(counts[k])})" for k in present)
    collapsed = [k for k in present if collapsed_run(counts[k])]
    if collapsed:
        verdict = (f"cannot show whether two encoders beat one: {', '.join(collapsed)} write one caption for "
                   f"{COLLAPSED_SHARE:.0%} of the images or more (collapsed), so differences between the variants "
                   "are not a result")
    else:
        best = max(present, key=lambda k: rows[k]["Bleu_1"])
        verdict = f"{best} scores the best BLEU-1" + (" (as the paper says)" if best.startswith("MSMedCap") else
                                                     " (the paper: MSMedCap)")
    return measured, verdict


def _xai_lstm(run: _Run) -> tuple[str, str]:
    measured, verdict = [], []
    ours, floor, counts, learns = _against_floor(run, "07_scores", "system", "XAI-LSTM (ours)", "most frequent caption",
                                                 "Bleu_4", ("xai-lstm-demo", "xai-lstm-rocov2"))
    if ours is not None:
        measured.append(f"notebook 07, test: paper-protocol BLEU {_fmt(ours['paper BLEU'])}, COCO BLEU-4 "
                        f"{_fmt(ours['Bleu_4'])} (most frequent caption: {_fmt(floor)}), {_count(counts)}"
                        + _shuffled(run, ("xai-lstm-demo", "xai-lstm-rocov2")))
        verdict.append("the captioner learns image-dependent captions" if learns
                       else "the captioner barely uses the image")
    grounding = run.table("07_attention_on_finding")
    if grounding is not None and "mass / area" in grounding:
        word = grounding[grounding["steps"] == "finding word"].set_index("model")
        if {"trained", "untrained"} <= set(word.index):
            t, u = word.loc["trained", "mass / area"], word.loc["untrained", "mass / area"]
            measured.append(f"attention mass on the finding's box at the finding word: {t:.2f}x its area share "
                            f"(untrained model {u:.2f}x)")
            verdict.append(f"in this run the attention {'does' if t > 1.25 else 'does not'} fall on the finding more "
                           "than chance (notebook 07: this holds for some training seeds only)")
    return "; ".join(measured), "; ".join(verdict)


_READERS = {"000": _blip_2q2t, "001": _medblip, "002": _uit_oggy, "003": _msmedcap, "004": _xai_lstm}


def paper_summaries(reports) -> list[dict]:
    """One dict per paper: paper, measured, verdict (empty strings where this run wrote nothing)."""
    run = _Run(reports)
    return [dict(zip(("paper", "measured", "verdict"), (paper, *_READERS[paper.key](run)))) for paper in PAPERS]


def summary_markdown(reports, profile: str | None = None) -> list[str]:
    """The ``## Summary per paper`` section as markdown lines."""
    lines = ["## Summary per paper", ""]
    if profile == "demo" or profile is None:
        lines += ["The demo profile trains small models from scratch on synthetic images for minutes on a CPU: "
                  "its numbers "
                  "show whether each pipeline learns, not what the papers' models reach on ROCOv2. A collapsed model "
                  "(one caption for half the images or more) does not use the image, and comparisons with such models "
                  "are not results; the verdicts below say where that happens.", ""]
    for item in paper_summaries(reports):
        paper: Paper = item["paper"]
        lines += [f"### {paper.short}: notebook{'s' if len(paper.notebooks) > 1 else ''} "
                  f"{', '.join(paper.notebooks)}", "",
                  f"- **Paper**: {citation(paper)}",
                  f"- **Claim**: {paper.claim}",
                  f"- **This run measured**: {item['measured'] or 'nothing: its notebooks wrote no tables here'}.",
                  f"- **Verdict**: {item['verdict'] or 'not run'}.",
                  f"- **On real data**: `{REAL_RUN}`; {paper.real_run}. The paper reports "
                  + "; ".join(f"{what} ({where})" for what, where in paper.reported) + ".", ""]
    return lines
