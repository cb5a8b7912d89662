"""What a student sees: figures sized for a laptop, titles wrapped not cut, colour bars, one colour
per run, full captions, and notebook 08's summary in place of its 22 x 29 pivot (issue 15, item 5)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from medcap_utils import plotting
from medcap_utils.analysis import explain  # noqa: E402
from medcap_utils.analysis.cross_attention import CrossAttention, plot_gallery  # noqa: E402
from medcap_utils.evaluation import run_summary
from medcap_utils.evaluation.evaluate_runs import COLUMNS  # noqa: E402
from medcap_utils.evaluation.runfiles import write_run_dir  # noqa: E402
from medcap_utils.papers import run_group  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LONG = ("Chest CT (axial section) demonstrates a 29 mm mass in the left lung (blue arrow) with a small pleural "
        "effusion posteriorly and an incidental hepatic cyst measuring 11 mm in segment seven")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _colorbars(fig) -> list:
    return [a for a in fig.axes if getattr(a, "_colorbar", None) is not None]


def _texts(fig) -> str:
    """Every text drawn in the figure, as one string with line breaks turned into spaces."""
    fig.canvas.draw()
    return " ".join(t.get_text().replace("\n", " ") for t in fig.findobj(matplotlib.text.Text))


def _words_in_order(text: str, inside: str) -> bool:
    return " ".join(text.split()) in " ".join(inside.split())


# ---- plotting helpers ---------------------------------------------------------------------------

def test_wrap_keeps_every_word_and_breaks_lines():
    wrapped = plotting.wrap(LONG, 30)
    assert wrapped.split() == LONG.split()  # nothing cut, nothing shortened
    assert all(len(line) <= 30 for line in wrapped.splitlines())
    assert "…" not in wrapped and "..." not in wrapped
    assert (plotting.wrap("supercalifragilisticexpialidocious x", 10).splitlines()[0]
            == "supercalifragilisticexpialidocious")


def test_wrapped_title_shows_the_full_text_on_several_lines():
    fig, ax = plt.subplots(figsize=(3, 2))
    title = plotting.wrapped_title(ax, LONG, fontsize=8)
    assert title.get_text().split() == LONG.split()
    assert title.get_text().count("\n") >= 2


@pytest.mark.parametrize("k", [1, 2, 7, 12, 29])
def test_run_palette_gives_k_runs_k_distinct_colours(k):
    runs = ([f"decoding_blip_base_{i}" for i in range(k // 2)] + [f"medblip_{i}" for i in range(k - k // 2 - 1)]
            + ["baseline-most-frequent-caption"])[:k]
    palette = plotting.run_palette(runs)
    assert set(palette) == set(runs)
    assert len(set(palette.values())) == k


def test_run_palette_is_the_same_in_every_figure_of_the_same_runs():
    runs = ["medblip_blip_full", "06_msmedcap_dual", "xai-lstm-demo", "blip_demo_test"]
    assert plotting.run_palette(runs) == plotting.run_palette(list(reversed(runs)))


def test_run_groups_follow_the_notebooks():
    assert run_group("blip_demo_test").notebook == "02" and run_group("blip_demo_test").paper == "000"
    assert run_group("blip_demo_test_uit_oggy").paper == "002"
    assert run_group("blip-uit-oggy-large-test").paper == "002"
    assert run_group("blip-2q2t-large-test").paper == "000"
    assert run_group("decoding_blip_large_beam4").notebook == "04"
    assert run_group("06_msmedcap_dual").paper == "003"
    assert run_group("xai-lstm-demo").paper == "004"
    assert run_group("medcsra-demo-test").notebook == "05"
    assert run_group("baseline-top3-concepts").paper is None


def test_draw_box_skips_a_missing_box():
    fig, ax = plt.subplots()
    ax.imshow(np.zeros((10, 20, 3)))
    assert plotting.draw_box(ax, (float("nan"),) * 4, (10, 20)) is None
    patch = plotting.draw_box(ax, (0.5, 0.2, 1.0, 0.6), (10, 20))
    assert patch.get_width() == pytest.approx(10) and patch.get_height() == pytest.approx(4)


def test_pixel_size_sees_a_too_wide_figure():
    fig, _ = plt.subplots(figsize=(16, 2))
    assert plotting.pixel_size(fig)[0] > plotting.MAX_WIDTH_PX
    fig, _ = plt.subplots(figsize=(plotting.fig_width(16), 2))
    assert plotting.pixel_size(fig)[0] <= plotting.MAX_WIDTH_PX


# ---- the notebooks' figures ---------------------------------------------------------------------

def _image(h=96, w=96):
    return (np.random.default_rng(0).random((h, w, 3)) * 255).astype(np.uint8)


def test_lstm_attention_gallery_is_a_grid_with_full_title_colour_bar_and_box():
    words = LONG.lower().replace("(", "").replace(")", "").split()
    alphas = np.random.default_rng(1).random((len(words), 12, 12))
    title = f"wrong | reference: {LONG} | generated: {' '.join(words)}"
    fig = explain.attention_gallery(_image(), words, alphas, title=title, max_words=11, box=(0.6, 0.4, 0.7, 0.55))
    width, height = plotting.pixel_size(fig)
    assert width <= plotting.MAX_WIDTH_PX and height < width  # a grid, not a 2436 x 258 strip
    assert _colorbars(fig)
    assert _words_in_order(title, fig._suptitle.get_text().replace("\n", " "))
    panels = [a for a in fig.axes if getattr(a, "_colorbar", None) is None]
    assert sum(len(a.patches) for a in panels) == 12  # the box on the image and on each of 11 word maps
    assert all(t in _texts(fig) for t in words[:11])  # every word title whole


def test_lstm_finding_figure_and_word_importance_fit_a_laptop():
    fig = explain.finding_attention_figure([_image()] * 6, [np.random.rand(12, 12)] * 6, [(0.1, 0.1, 0.3, 0.3)] * 6,
                                           ["mass", "pleural effusion", "nodule", "cyst", "fracture", "aneurysm"])
    assert plotting.pixel_size(fig)[0] <= plotting.MAX_WIDTH_PX and _colorbars(fig)
    words = LONG.split()
    fig = explain.word_importance_figure([words, words[:4]], [np.random.rand(len(words)), np.random.rand(4)])
    assert plotting.pixel_size(fig)[0] <= plotting.MAX_WIDTH_PX
    assert all(w in _texts(fig) for w in words)  # a long caption continues on the next line


def _cross_attention(caption: str) -> CrossAttention:
    tokens = caption.split()
    att = torch.rand(2, 4, len(tokens), 4, 4)
    att = att / att.sum(dim=(-2, -1), keepdim=True)
    return CrossAttention(image=_image(64, 64), tokens=tokens, token_ids=list(range(len(tokens))), caption=caption,
                          attention=att, cls_share=torch.rand(2, 4, len(tokens)))


def test_cross_attention_gallery_has_colour_bar_box_and_full_captions():
    results = [_cross_attention("axial abdominal computed tomography with a mass lesion in the liver "
                                "measuring 41 mm")] * 3
    labels = [f"correct (CT) | reference: {LONG}"] * 3
    fig = plot_gallery(results, labels, max_tokens=8, boxes=[(0.1, 0.2, 0.4, 0.5), None, (np.nan,) * 4])
    assert plotting.pixel_size(fig)[0] <= plotting.MAX_WIDTH_PX
    assert _colorbars(fig)
    text = _texts(fig)
    assert _words_in_order(LONG, text) and _words_in_order(results[0].caption, text)
    panels = [a for a in fig.axes if getattr(a, "_colorbar", None) is None]
    assert sum(len(a.patches) for a in panels) == 9  # first row only: one box on each of its 9 panels


def test_example_grid_shows_full_captions_within_the_width(tmp_path):
    from medcap_utils.data.statistics import plot_examples

    paths = []
    for k in range(4):
        path = tmp_path / f"{k}.png"
        plt.imsave(path, _image(32, 32))
        paths.append(str(path))
    frame = pd.DataFrame({"image_path": paths, "modality": ["CT"] * 4, "caption": [LONG] * 4})
    fig = plot_examples(frame, n=4)
    assert plotting.pixel_size(fig)[0] <= plotting.MAX_WIDTH_PX
    assert _words_in_order(LONG, _texts(fig))


# ---- notebook 08's summary ----------------------------------------------------------------------

def _metrics_table(runs: dict[str, float]) -> pd.DataFrame:
    rows = []
    for run, value in runs.items():
        for protocol, metric in run_summary.CAPTION_HEADLINE:
            rows.append({"run": run, "task": "captions", "split": "test", "protocol": protocol, "metric": metric,
                         "value": value, "ci_low": value - 0.01, "ci_high": value + 0.01, "n": 10, "status": "ok",
                         "note": ""})
        rows.append({"run": run, "task": "captions", "split": "test", "protocol": "imageclef2025", "metric": "bleurt",
                     "value": np.nan, "ci_low": np.nan, "ci_high": np.nan, "n": 0, "status": "unavailable",
                     "note": "no model"})
    return pd.DataFrame(rows, columns=COLUMNS)


@pytest.fixture()
def many_runs(tmp_path):
    """29 caption runs like the demo's (several per notebook), two of them writing one caption."""
    names = (["blip_demo_test", "blip_demo_test_uit_oggy"] + [f"medblip_{v}" for v in
             ("blip_full", "blip_decoder_only", "blip_encoder_only", "blip_zero_shot", "vit_gpt2", "blip2",
              "instructblip", "most_frequent_caption", "blip_notebook02")]
             + [f"decoding_blip_{s}_{d}" for s in ("base", "large")
                for d in ("greedy", "beam3", "beam4", "beam5", "beam10")]
             + ["06_msmedcap_blip2", "06_msmedcap_sam_blip2", "06_msmedcap_dual", "xai-lstm-demo",
                "baseline-most-frequent-caption"] + [f"extra_run_{i}" for i in range(3)])
    runs = tmp_path / "runs"
    ids = [f"img{i}" for i in range(10)]
    for k, name in enumerate(names):
        same = name in ("medblip_most_frequent_caption", "baseline-most-frequent-caption")
        write_run_dir(name, "captions", "test", str(tmp_path), {i: "ct of the chest" if same else f"caption {i} {k}"
                                                                for i in ids}, runs_root=runs)
    table = _metrics_table({name: 0.1 + 0.01 * k for k, name in enumerate(names)})
    return table, runs, names


def test_summary_is_bounded_names_the_csv_and_the_collapsed_runs(many_runs):
    table, runs, names = many_runs
    assert len(names) == 29
    distinct = run_summary.distinct_captions(runs)
    assert distinct.set_index("run").loc["medblip_most_frequent_caption", "distinct captions"] == 1
    summary = run_summary.caption_summary(table, distinct, csv_path="reports/tables/metrics.csv")
    assert len(summary) <= 15 and summary.shape[1] <= 8
    assert "reports/tables/metrics.csv" in summary.attrs["note"]
    assert "medblip_most_frequent_caption" in summary.attrs["note"] and "collapsed" in summary.attrs["note"]
    # the best of notebook 03 is not the run that writes one caption, even where it would score best
    best_03 = summary.loc[summary["notebook"].str.startswith("03"), "best run"].iloc[0]
    assert not best_03.startswith("medblip_most_frequent_caption")
    assert len(summary.to_string()) < 3000  # was a 37 KB pivot


def test_summary_changes_with_the_table(many_runs):
    table, runs, _ = many_runs
    distinct = run_summary.distinct_captions(runs)
    before = run_summary.caption_summary(table, distinct)
    table.loc[(table.run == "medblip_blip_full") & (table.metric == "rouge1"), "value"] = 0.99
    after = run_summary.caption_summary(table, distinct)
    row = after[after["notebook"].str.startswith("03")].iloc[0]
    assert row["best run"].startswith("medblip_blip_full") and row[run_summary.RANK_BY] == 0.99
    assert not before.equals(after)


def test_metric_figures_fit_and_tell_runs_apart(many_runs):
    table, runs, names = many_runs
    distinct = run_summary.distinct_captions(runs)
    heat = run_summary.plot_metric_heatmap(table, distinct)
    assert plotting.pixel_size(heat)[0] <= plotting.MAX_WIDTH_PX and _colorbars(heat)
    assert "0.110" in _texts(heat)  # values printed in the cells
    best = run_summary.caption_summary(table, distinct).attrs["runs"]
    fig = run_summary.plot_best_runs(table, best)
    assert plotting.pixel_size(fig)[0] <= plotting.MAX_WIDTH_PX
    assert not any(ax.get_legend() for ax in fig.axes)  # runs are named on the axis, no legend over bars
    colours = {tuple(np.round(p.get_facecolor(), 3)) for p in fig.axes[0].patches}
    assert len(colours) == len(best) <= 10


# ---- no caption cut anywhere a student looks -----------------------------------------------------

DISPLAY_MODULES = ["plotting.py", "analysis/explain.py", "analysis/cross_attention.py", "data/statistics.py",
                   "evaluation/run_summary.py", "display.py", "analysis/medcsra_maps.py", "report.py",
                   "evaluation/report_summary.py", "explorer/render.py",
                   *sorted(p.relative_to(ROOT / "medcap_utils").as_posix()
                           for p in (ROOT / "medcap_utils" / "experiments").glob("[!_]*.py"))]
# a caption (or title) cut to a fixed width: shorten(), an ellipsis, "[:38] + '...'", caption[:40], an f-string
# field "{x[i][:90]}", pandas' column width set to a number (list slices such as captions[:6] are fine)
CUT = [re.compile(p) for p in (r"textwrap\.shorten", r"…", r"\[:\d+\]\s*\+\s*\(?[\"']\.\.\.",
                               r"\b(cap|caption|text|title|label)\[:\d+\]", r"\{[^{}]*\[:\d+\]\}",
                               r"max_colwidth\"?,\s*\d+")]


@pytest.mark.parametrize("name", DISPLAY_MODULES)
def test_display_helpers_never_cut_captions(name):
    path = ROOT / "medcap_utils" / name
    assert path.is_file(), f"{name} moved or renamed: update DISPLAY_MODULES"  # a skip here hid six modules once
    text = path.read_text()
    assert not [p.pattern for p in CUT if p.search(text)]


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_notebooks_never_cut_captions(path):
    code = "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")
    assert not [p.pattern for p in CUT if p.search(code)]
