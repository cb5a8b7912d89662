"""Figures of notebook ``05_concept_detection_medcsra``: training curves, threshold curves and the
attention maps of MedCSRA's attention branch laid over the images."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch.nn.functional as F

from medcap_utils.models.medcsra import MedCSRA
from medcap_utils.training.medcsra import ConceptImages, PixelRecipe


def plot_training_curves(history: pd.DataFrame):
    """Loss (train/validation) and validation F1 (per-image and micro, best threshold) per epoch."""
    fig, (ax_loss, ax_f1) = plt.subplots(1, 2, figsize=(10, 3.5))
    ax_loss.plot(history["epoch"], history["train_loss"], marker="o", label="train BCE")
    if "val_loss" in history:
        ax_loss.plot(history["epoch"], history["val_loss"], marker="o", label="validation BCE")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="BCE loss")
    ax_loss.legend()
    ax_f1.plot(history["epoch"], history["val_f1"], marker="o", label="per-image F1 (official)")
    ax_f1.plot(history["epoch"], history["val_f1_micro"], marker="s", label="micro-F1 (authors' code)")
    ax_f1.set(xlabel="epoch", ylabel="F1 at the best threshold", title="validation F1", ylim=(0, 1))
    ax_f1.legend()
    fig.tight_layout()
    return fig


def plot_threshold_curves(curve: pd.DataFrame, chosen: float, chosen_micro: float):
    """Both validation curves over the sweep, with the threshold each criterion picks."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(curve["threshold"], curve["f1_per_image"], marker="o", label="per-image F1 (official)")
    ax.plot(curve["threshold"], curve["f1_micro"], marker="s", label="micro-F1 (authors' code)")
    ax.axvline(chosen, color="C0", ls="--", lw=1, label=f"chosen {chosen:.2f}")
    if chosen_micro != chosen:
        ax.axvline(chosen_micro, color="C1", ls=":", lw=1, label=f"micro-F1 would pick {chosen_micro:.2f}")
    ax.set(xlabel="threshold", ylabel="F1 on validation", title="threshold sweep")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_attention_overlays(model: MedCSRA, dataset: ConceptImages, recipe: PixelRecipe, rows: list[int],
                            class_indices: list[int], titles: list[str], boxes: list | None = None):
    """One panel per (image row, class): the image with the class's attention map (bilinearly
    upsampled from the final feature map, scaled to its own range) on top, the full title wrapped,
    the finding's box (0..1 coordinates, ``boxes``) dashed where the demo truth knows it, and one
    colour bar; at most :data:`medcap_utils.plotting.MAX_WIDTH_PX` wide."""
    from medcap_utils.plotting import OVERLAY_CMAP, draw_box, fig_width, overlay_colorbar, wrapped_title

    device = next(model.parameters()).device
    fig, axes = plt.subplots(1, len(rows), figsize=(fig_width(2.6 * len(rows) + 0.8), 3.3), squeeze=False,
                             layout="constrained")
    for n, (ax, row, k, title) in enumerate(zip(axes[0], rows, class_indices, titles)):
        pixels = dataset[row]["pixels"][None].to(device)
        heat = model.attention_maps(recipe(pixels, train=False), k)[None].float()  # (1, 1, h, w)
        heat = F.interpolate(heat, size=pixels.shape[1:3], mode="bilinear", align_corners=False)[0, 0].cpu()
        heat = (heat - heat.min()) / (heat.max() - heat.min() + 1e-8)
        ax.imshow(pixels[0].cpu().numpy())
        ax.imshow(heat.numpy(), cmap=OVERLAY_CMAP, alpha=0.45, vmin=0, vmax=1)
        draw_box(ax, boxes[n] if boxes is not None and n < len(boxes) else None, pixels.shape[1:3])
        wrapped_title(ax, title, fontsize=8)
        ax.axis("off")
    overlay_colorbar(fig, list(axes[0]), "class attention (min to max)")
    if boxes is not None and any(b is not None for b in boxes):
        fig.suptitle("dashed box: the finding's location in the demo truth", fontsize=8)
    return fig


def top_class(probs: np.ndarray, row: int, among: list[int] | None = None) -> int:
    """The most probable class of one image (optionally among some class indices)."""
    candidates = np.arange(probs.shape[1]) if among is None else np.asarray(among)
    return int(candidates[np.argmax(probs[row, candidates])])

