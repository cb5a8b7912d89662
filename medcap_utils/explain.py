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
import torch.nn.functional as F

from medcap_utils.report import save_figure


def upsample(att: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(h, w) or (T, h, w) attention -> image size, bilinear, each map rescaled to [0, 1] for display."""
    t = torch.as_tensor(np.asarray(att, dtype=np.float32))
    squeeze = t.dim() == 2
    t = t[None] if squeeze else t
    up = F.interpolate(t[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    lo = up.amin(dim=(1, 2), keepdim=True)
    hi = up.amax(dim=(1, 2), keepdim=True)
    up = ((up - lo) / (hi - lo).clamp_min(1e-12)).numpy()
    return up[0] if squeeze else up


def attention_gallery(image: np.ndarray, words: Sequence[str], alphas: np.ndarray, title: str = "",
                      highlight: set[str] | None = None, max_words: int = 11, name: str | None = None):
    """One row: the image, then the attention map of each generated word over it. Words that also
    occur in the reference (``highlight``) are titled in red, as the paper does."""
    import matplotlib.pyplot as plt

    words = list(words)[:max_words]
    n = len(words) + 1
    fig, axes = plt.subplots(1, n, figsize=(1.7 * n, 2.2), squeeze=False)
    axes = axes[0]
    axes[0].imshow(image)
    axes[0].set_title("image", fontsize=8)
    maps = upsample(alphas[: len(words)], image.shape[:2]) if words else []
    for ax, word, att in zip(axes[1:], words, maps):
        ax.imshow(image)
        ax.imshow(att, cmap="jet", alpha=0.45)
        colour = "red" if highlight and word in highlight else "black"
        ax.set_title(word, fontsize=8, color=colour)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    if name is not None:
        save_figure(fig, name)
    return fig


def word_importance_figure(captions: Sequence[Sequence[str]], weights: Sequence[Sequence[float]],
                           name: str | None = None, title: str = "word importance (self-attention of the GRU encoder)"):
    """Each caption as a row of words shaded by their self-attention weight (darker = more important,
    as in the paper's Fig. 3), with the weight printed under the word."""
    import matplotlib.pyplot as plt

    rows = len(captions)
    width = max((len(c) for c in captions), default=1)
    fig, ax = plt.subplots(figsize=(min(1.1 * width, 16), 0.55 * rows + 0.6))
    cmap = plt.get_cmap("Reds")
    for r, (words, w) in enumerate(zip(captions, weights)):
        w = np.asarray(w[: len(words)], dtype=float)
        top = w.max() if len(w) and w.max() > 0 else 1.0
        for c, (word, value) in enumerate(zip(words, w)):
            ax.text(c, -r, word, ha="center", va="center", fontsize=8,
                    bbox=dict(boxstyle="round,pad=0.2", fc=cmap(0.1 + 0.8 * value / top), ec="none"))
            ax.text(c, -r - 0.32, f"{value:.2f}", ha="center", va="center", fontsize=6, color="0.3")
    ax.set_xlim(-0.7, width - 0.3)
    ax.set_ylim(-rows + 0.3, 0.7)
    ax.axis("off")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    if name is not None:
        save_figure(fig, name)
    return fig


def feature_map_figure(image: np.ndarray, hidden_states: Sequence[torch.Tensor], names: Sequence[str] | None = None,
                       channels: int = 6, name: str | None = None):
    """Rows = depths of the CNN (stem, stage 1, ...), columns = the ``channels`` most active channels
    of that depth for this image (mean activation), as the paper's Fig. 2 shows layers 0/20/40."""
    import matplotlib.pyplot as plt

    rows = len(hidden_states)
    fig, axes = plt.subplots(rows, channels + 1, figsize=(1.5 * (channels + 1), 1.55 * rows), squeeze=False)
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
    fig.tight_layout()
    if name is not None:
        save_figure(fig, name)
    return fig


def finding_attention_figure(images: Sequence[np.ndarray], maps: Sequence[np.ndarray],
                             boxes: Sequence[Sequence[float]], titles: Sequence[str] = (),
                             name: str | None = None):
    """One panel per image: the (h, w) attention map over the image and the finding's box (0..1
    coordinates, from the demo truth) as a white rectangle, so a reader can see a hit or a miss."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    n = len(images)
    fig, axes = plt.subplots(1, max(n, 1), figsize=(2.0 * max(n, 1), 2.3), squeeze=False)
    for k, (ax, image, att, box) in enumerate(zip(axes[0], images, maps, boxes)):
        H, W = image.shape[:2]
        ax.imshow(image)
        ax.imshow(upsample(att, (H, W)), cmap="jet", alpha=0.45)
        x0, y0, x1, y1 = box
        ax.add_patch(Rectangle((x0 * W, y0 * H), (x1 - x0) * W, (y1 - y0) * H, fill=False, ec="white", lw=1.2))
        ax.set_title(titles[k] if k < len(titles) else "", fontsize=7)
    for ax in axes[0]:
        ax.axis("off")
    fig.tight_layout()
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
