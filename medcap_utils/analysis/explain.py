"""Explanation figures of the attention-LSTM captioner (seed 004, Figs. 2-5) and a check of them.

Used by notebook ``07_explainable_lstm_captioner``:

* :func:`attention_gallery` -- the image and, per generated word, its visual attention map upsampled
  over the image (the paper's Figs. 4 and 5, for a correct and a wrong caption).
* :func:`word_importance_figure` -- the semantic encoder's self-attention weight per word (Fig. 3).
* :func:`feature_map_figure` -- CNN activations at several depths (Fig. 2).
* :func:`finding_attention_figure` -- the attention at the finding word with the finding's box drawn.
* :func:`attention_hit_rate` -- how often the attention peak lies inside the finding's bounding box
  that the demo generator recorded (``{split}_demo_truth.csv``), against chance. The paper only shows
  pictures; this turns "the model looks at the right place" into a number that a test can check.

Figures are written to ``reports/figures/<name>.png`` when a ``name`` is given.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from medcap_utils.analysis.upsample import upsample as _upsample
from medcap_utils.report import save_figure


def upsample(att: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(h, w) or (T, h, w) attention -> image size, bilinear, each map rescaled to [0, 1] for display
    (:func:`medcap_utils.analysis.upsample.upsample` with ``rescale=True``)."""
    return _upsample(np.asarray(att, dtype=np.float32), size, rescale=True)


def attention_gallery(image: np.ndarray, words: Sequence[str], alphas: np.ndarray, title: str = "",
                      highlight: set[str] | None = None, max_words: int = 11, name: str | None = None,
                      box: Sequence[float] | None = None, max_cols: int = 6):
    """The image, then the attention map of each generated word over it, in a grid of at most
    ``max_cols`` columns (sized for a laptop screen), with a colour bar. Words that also occur in
    the reference (``highlight``) are titled in red, as the paper does; ``title`` (e.g. the full
    reference and generated caption) is wrapped, never cut; ``box`` (0..1 coordinates, the demo
    truth) is drawn on every panel where it is known."""
    import matplotlib.pyplot as plt

    from medcap_utils.plotting import (
        OVERLAY_CMAP,
        chars_per_line,
        draw_box,
        fig_width,
        grid_shape,
        overlay_colorbar,
        wrap,
    )

    all_words = list(words)
    words = all_words[:max_words]
    if len(all_words) > len(words):
        title = f"{title}\n(attention of the first {len(words)} of {len(all_words)} words)"
    rows, cols = grid_shape(len(words) + 1, max_cols)
    width = fig_width(1.65 * cols + 0.7)
    fig, axes = plt.subplots(rows, cols, figsize=(width, 1.75 * rows + 0.5), squeeze=False, layout="constrained")
    flat = axes.ravel()
    flat[0].imshow(image)
    flat[0].set_title("image", fontsize=8)
    maps = upsample(alphas[: len(words)], image.shape[:2]) if words else []
    for ax, word, att in zip(flat[1:], words, maps):
        ax.imshow(image)
        ax.imshow(att, cmap=OVERLAY_CMAP, alpha=0.45, vmin=0, vmax=1)
        colour = "red" if highlight and word in highlight else "black"
        ax.set_title(word, fontsize=8, color=colour)
    for k, ax in enumerate(flat):
        if k <= len(words):
            draw_box(ax, box, image.shape)
        ax.axis("off")
    overlay_colorbar(fig, list(flat))
    if box is not None:
        title += "\n(dashed box: the finding's location in the demo truth)"
    fig.suptitle(wrap(title, chars_per_line(width, 8)), fontsize=8)
    if name is not None:
        save_figure(fig, name)
    return fig


def word_importance_figure(captions: Sequence[Sequence[str]], weights: Sequence[Sequence[float]],
                           name: str | None = None, title: str = "word importance (self-attention of the GRU encoder)",
                           words_per_line: int = 10):
    """Each caption as rows of words shaded by their self-attention weight (darker = more important,
    as in the paper's Fig. 3), with the weight printed under the word; a caption longer than
    ``words_per_line`` continues on the next line, so every word is shown and the figure stays
    within a laptop screen's width."""
    import matplotlib.pyplot as plt

    from medcap_utils.plotting import fig_width

    longest = max((len(c) for c in captions), default=1)
    per_line = max(1, min(longest, words_per_line))
    lines = sum(max(1, -(-len(c) // per_line)) for c in captions)
    fig, ax = plt.subplots(figsize=(fig_width(1.05 * per_line + 0.6), 0.55 * lines + 0.35 * len(captions) + 0.6))
    cmap = plt.get_cmap("Reds")
    y = 0.0
    for r, (words, w) in enumerate(zip(captions, weights)):
        w = np.asarray(w[: len(words)], dtype=float)
        top = w.max() if len(w) and w.max() > 0 else 1.0
        ax.text(-0.65, y, f"{r + 1}", ha="right", va="center", fontsize=8, color="0.4")
        for c, (word, value) in enumerate(zip(words, w)):
            row, col = divmod(c, per_line)
            ax.text(col, y - row, word, ha="center", va="center", fontsize=8,
                    bbox=dict(boxstyle="round,pad=0.2", fc=cmap(0.1 + 0.8 * value / top), ec="none"))
            ax.text(col, y - row - 0.32, f"{value:.2f}", ha="center", va="center", fontsize=6, color="0.3")
        y -= max(1, -(-len(words) // per_line)) + 0.35
    ax.set_xlim(-1.0, per_line - 0.3)
    ax.set_ylim(y + 0.3, 0.7)
    ax.axis("off")
    ax.set_title(title + " (darker = higher weight; number: the weight)", fontsize=9)
    fig.tight_layout()
    if name is not None:
        save_figure(fig, name)
    return fig


def feature_map_figure(image: np.ndarray, hidden_states: Sequence[torch.Tensor], names: Sequence[str] | None = None,
                       channels: int = 6, name: str | None = None):
    """Rows = depths of the CNN (stem, stage 1, ...), columns = the ``channels`` most active channels
    of that depth for this image (mean activation), as the paper's Fig. 2 shows layers 0/20/40."""
    import matplotlib.pyplot as plt

    from medcap_utils.plotting import fig_width

    rows = len(hidden_states)
    fig, axes = plt.subplots(rows, channels + 1, figsize=(fig_width(1.5 * (channels + 1)), 1.55 * rows + 0.4),
                             squeeze=False)
    for r, fmap in enumerate(hidden_states):
        fmap = fmap[0].detach().float().cpu()  # (C, h, w) of the first image
        order = fmap.mean(dim=(1, 2)).argsort(descending=True)[:channels]
        axes[r, 0].imshow(image)
        axes[r, 0].set_ylabel(names[r] if names else f"depth {r}", fontsize=8)
        for c, ch in enumerate(order.tolist()):
            axes[r, c + 1].imshow(fmap[ch].numpy(), cmap="viridis")
            axes[r, c + 1].set_title(f"ch {ch} ({fmap.shape[1]}x{fmap.shape[2]})", fontsize=6)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle("CNN activations: the most active channels per depth (viridis: each map scaled to its own range; "
                 "bright = strong)", fontsize=8)
    fig.tight_layout()
    if name is not None:
        save_figure(fig, name)
    return fig


def finding_attention_figure(images: Sequence[np.ndarray], maps: Sequence[np.ndarray],
                             boxes: Sequence[Sequence[float]], titles: Sequence[str] = (),
                             name: str | None = None, max_cols: int = 6):
    """One panel per image: the (h, w) attention map over the image and the finding's box (0..1
    coordinates, from the demo truth) as a dashed white rectangle, so a reader can see a hit or a
    miss; one colour bar."""
    import matplotlib.pyplot as plt

    from medcap_utils.plotting import OVERLAY_CMAP, draw_box, fig_width, grid_shape, overlay_colorbar, wrapped_title

    n = max(len(images), 1)
    rows, cols = grid_shape(n, max_cols)
    fig, axes = plt.subplots(rows, cols, figsize=(fig_width(1.8 * cols + 0.8), 1.9 * rows + 0.5), squeeze=False,
                             layout="constrained")
    flat = axes.ravel()
    for k, (ax, image, att, box) in enumerate(zip(flat, images, maps, boxes)):
        ax.imshow(image)
        ax.imshow(upsample(att, image.shape[:2]), cmap=OVERLAY_CMAP, alpha=0.45, vmin=0, vmax=1)
        draw_box(ax, box, image.shape)
        wrapped_title(ax, titles[k] if k < len(titles) else "", fontsize=7)
    for ax in flat:
        ax.axis("off")
    overlay_colorbar(fig, list(flat))
    fig.suptitle("attention at the step that writes the finding word; dashed box: where the finding is (demo truth)",
                 fontsize=8)
    if name is not None:
        save_figure(fig, name)
    return fig


def cell_box_overlap(grid: tuple[int, int], box: Sequence[float]) -> np.ndarray:
    """(h, w) share of each attention cell's area that lies inside ``box`` = (x0, y0, x1, y1) in 0..1."""
    h, w = grid
    x0, y0, x1, y1 = box
    xs, ys = np.arange(w + 1) / w, np.arange(h + 1) / h
    ox = np.clip(np.minimum(xs[1:], x1) - np.maximum(xs[:-1], x0), 0, None) * w
    oy = np.clip(np.minimum(ys[1:], y1) - np.maximum(ys[:-1], y0), 0, None) * h
    return oy[:, None] * ox[None, :]


def attention_hit_rate(alphas: Sequence[np.ndarray], boxes: Sequence[Sequence[float]],
                       steps: Sequence[Sequence[int] | None] | None = None) -> dict:
    """Does the decoder look at the finding? Two measures, each with its chance level (notebook 07).

    ``alphas``: per image (T, h, w) attention maps; ``boxes``: per image the finding box
    (x0, y0, x1, y1) in 0..1 image coordinates (``{split}_demo_truth.csv``); ``steps``: per image
    the decoding steps to use (e.g. where the finding word was generated); None or empty = all
    steps. The chosen maps are averaged first.

    * ``hit_rate``: share of images whose most attended cell overlaps the box; ``chance_peak``: the
      same for a cell drawn uniformly at random (share of cells overlapping the box).
    * ``attention_mass``: mean attention inside the box (cells weighted by their overlap);
      ``chance_area``: the box's area share, which is exactly what uniform attention puts there.
    """
    hits, peak_chance, masses, areas = [], [], [], []
    for i, (att, box) in enumerate(zip(alphas, boxes)):
        att = np.asarray(att, dtype=float)
        chosen = steps[i] if steps is not None and steps[i] else range(att.shape[0])
        pooled = att[list(chosen)].mean(0)
        pooled = pooled / max(pooled.sum(), 1e-12)
        overlap = cell_box_overlap(pooled.shape, box)
        hits.append(overlap.flat[int(np.argmax(pooled))] > 0)
        peak_chance.append(float((overlap > 0).mean()))
        masses.append(float((pooled * overlap).sum()))
        x0, y0, x1, y1 = box
        areas.append(max(0.0, x1 - x0) * max(0.0, y1 - y0))
    n = len(hits)
    mean = (lambda v: float(np.mean(v))) if n else (lambda v: float("nan"))
    return {"hit_rate": mean(hits), "chance_peak": mean(peak_chance), "attention_mass": mean(masses),
            "chance_area": mean(areas), "n": n}
