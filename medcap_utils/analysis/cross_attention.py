"""Decoder cross-attention maps of BLIP captions (seed 001's interpretability figure).

For each generated token we take the text decoder's cross-attention from the query position that
produced it (position j-1 predicts token j) over the image tokens, drop the vision [CLS] token,
renormalise over the patches (so every head's map sums to 1 and maps of different tokens compare;
the [CLS] share is kept in ``cls_share``), reshape to the patch grid, aggregate heads and layers,
upsample to the image and overlay it. Used by notebook 03.

BLIP's text attention always materialises its softmax, but other attention kernels (SDPA, flash)
return no weights, so the model is switched to eager attention first.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from medcap_utils.analysis.upsample import upsample  # noqa: F401 (notebook 03 and its tests import it from here)


@dataclass
class CrossAttention:
    """One caption's cross-attention.

    attention: ``(layers, heads, tokens, grid, grid)``, each map non-negative and summing to 1.
    cls_share: ``(layers, heads, tokens)`` attention the query gave to the vision [CLS] token.
    """

    image: np.ndarray  # uint8 (H, W, 3), what the model saw
    tokens: list[str]
    token_ids: list[int]
    caption: str
    attention: torch.Tensor
    cls_share: torch.Tensor

    @property
    def grid(self) -> int:
        return int(self.attention.shape[-1])


def use_eager_attention(model) -> None:
    """Attention weights are only returned by the eager implementation."""
    if hasattr(model, "set_attn_implementation"):
        try:
            model.set_attn_implementation("eager")
            return
        except (ValueError, AttributeError, NotImplementedError):
            pass
    model.config._attn_implementation = "eager"


@torch.no_grad()
def blip_cross_attention(model, processor, image: np.ndarray, max_new_tokens: int = 30, num_beams: int = 1,
                         no_repeat_ngram_size: int = 3) -> CrossAttention:
    """Caption ``image`` (uint8 ``(H, W, 3)``, normally the model's resolution) with a BLIP captioning
    model (``load_blip``) and return the cross-attention of every generated word piece.
    Used by notebook 03."""
    from medcap_utils.models.blip import pixel_values

    use_eager_attention(model)
    model.eval()
    tokenizer = processor.tokenizer
    device = next(model.parameters()).device
    pixels = pixel_values(torch.from_numpy(np.ascontiguousarray(image[None])).to(device), processor)
    interpolate = int(pixels.shape[-1]) != int(model.config.vision_config.image_size)
    sequence = model.generate(pixel_values=pixels, max_new_tokens=max_new_tokens, num_beams=num_beams,
                              no_repeat_ngram_size=no_repeat_ngram_size, interpolate_pos_encoding=interpolate)
    image_embeds = model.vision_model(pixel_values=pixels, interpolate_pos_encoding=interpolate).last_hidden_state
    # Teacher-forced pass over the generated sequence: same attention as during generation.
    out = model.text_decoder(input_ids=sequence, encoder_hidden_states=image_embeds, output_attentions=True,
                             return_dict=True)
    cross = torch.stack([layer[0] for layer in out.cross_attentions])  # (layers, heads, seq, 1 + patches)
    ids = sequence[0].tolist()
    # index 0 is [DEC], which the hub tokenizers do not know; the rest minus [SEP]/[PAD] are words
    special = set(tokenizer.all_special_ids) | {model.config.text_config.sep_token_id,
                                                 model.config.text_config.pad_token_id}
    positions = [j for j in range(1, len(ids)) if ids[j] not in special]
    weights = cross[:, :, [j - 1 for j in positions], :]  # query j-1 produced token j
    cls_share = weights[..., 0]
    patches = weights[..., 1:]
    patches = patches / patches.sum(dim=-1, keepdim=True).clamp_min(1e-12)
    grid = math.isqrt(patches.shape[-1])
    if grid * grid != patches.shape[-1]:
        raise ValueError(f"{patches.shape[-1]} image tokens after [CLS] do not form a square grid")
    attention = patches.reshape(*patches.shape[:-1], grid, grid).float().cpu()
    token_ids = [ids[j] for j in positions]
    return CrossAttention(image=image, tokens=tokenizer.convert_ids_to_tokens(token_ids), token_ids=token_ids,
                          caption=tokenizer.decode(ids[1:], skip_special_tokens=True).strip(),
                          attention=attention, cls_share=cls_share.float().cpu())


def aggregate(attention: torch.Tensor, heads: str | int = "mean", layers: str | int = "last") -> torch.Tensor:
    """``(layers, heads, tokens, g, g)`` -> ``(tokens, g, g)``.

    heads: "mean" | "max" | a head index. layers: "last" | "all" (mean over layers) | a layer index.
    "max" over heads shows where any head looks; maps are rescaled to sum to 1 again afterwards.
    """
    if layers == "last":
        per_layer = attention[-1:]
    elif layers == "all":
        per_layer = attention
    elif isinstance(layers, int):
        per_layer = attention[layers: layers + 1 or None]
    else:
        raise ValueError(f"layers={layers!r}; expected 'last', 'all' or an index")
    if heads == "mean":
        per_head = per_layer.mean(dim=1)
    elif heads == "max":
        per_head = per_layer.amax(dim=1)
    elif isinstance(heads, int):
        per_head = per_layer[:, heads]
    else:
        raise ValueError(f"heads={heads!r}; expected 'mean', 'max' or an index")
    maps = per_head.mean(dim=0)
    return maps / maps.sum(dim=(-2, -1), keepdim=True).clamp_min(1e-12)


def mass_in_box(maps: torch.Tensor, box: tuple[float, float, float, float]) -> torch.Tensor:
    """Share of each map's mass inside ``box`` = (x0, y0, x1, y1) in 0..1 image coordinates.

    Uniform attention gives the box's area, so a value above the area means the token looks at the
    finding more than chance (the demo data's truth file has each finding's box). An image without a
    box (any coordinate NaN) gives NaN.
    """
    h, w = maps.shape[-2:]
    if any(math.isnan(float(v)) for v in box):
        return torch.full(maps.shape[:-2], float("nan"))
    x0, y0, x1, y1 = (float(v) for v in box)
    r0, r1 = int(math.floor(y0 * h)), max(int(math.ceil(y1 * h)), int(math.floor(y0 * h)) + 1)
    c0, c1 = int(math.floor(x0 * w)), max(int(math.ceil(x1 * w)), int(math.floor(x0 * w)) + 1)
    total = maps.sum(dim=(-2, -1)).clamp_min(1e-12)
    return maps[..., r0:r1, c0:c1].sum(dim=(-2, -1)) / total


def plot_token_maps(result: CrossAttention, heads="mean", layers="last", max_tokens: int = 12, axes=None,
                    title: str | None = None, box=None):
    """One row of panels: the image, then each generated token's map overlaid on it (each map scaled
    to its own maximum, colours as :func:`medcap_utils.plotting.overlay_colorbar` labels them) and,
    where ``box`` (0..1 coordinates) is known, the finding's box on every panel."""
    import matplotlib.pyplot as plt

    from medcap_utils.plotting import OVERLAY_CMAP, draw_box, fig_width

    maps = upsample(aggregate(result.attention, heads, layers), result.image.shape[:2]).numpy()
    maps = maps / np.maximum(maps.max(axis=(1, 2), keepdims=True), 1e-12)
    n = min(len(result.tokens), max_tokens)
    if axes is None:
        _, axes = plt.subplots(1, n + 1, figsize=(fig_width(1.2 * (n + 1)), 1.6))
    axes = np.atleast_1d(axes)
    axes[0].imshow(result.image)
    axes[0].set_title(title or "image", fontsize=7)
    for k, ax in enumerate(axes[1:]):
        ax.imshow(result.image)
        if k < n:
            ax.imshow(maps[k], cmap=OVERLAY_CMAP, alpha=0.5, vmin=0, vmax=1)
            ax.set_title(result.tokens[k], fontsize=8)
    for ax in axes:
        draw_box(ax, box, result.image.shape)
        ax.axis("off")
    return axes


def plot_gallery(results: list[CrossAttention], labels: list[str], heads="mean", layers="last",
                 max_tokens: int = 8, boxes=None):
    """One row per caption (e.g. correct ones first, then wrong ones), each under a heading that
    holds ``labels[row]`` (verdict, reference caption) and the full generated caption, wrapped;
    ``boxes`` (one per row, 0..1 coordinates or None) are drawn on every panel of their row. One colour
    bar for the figure. Fits :data:`medcap_utils.plotting.MAX_WIDTH_PX` at the saved dpi."""
    import matplotlib.pyplot as plt

    from medcap_utils.plotting import chars_per_line, colorbar_strip, fig_width, overlay_colorbar, wrap

    width = fig_width(1.15 * (max_tokens + 1) + 0.4)
    fig = plt.figure(figsize=(width, 1.95 * len(results) + 0.6), layout="constrained")
    content, cax = colorbar_strip(fig, 0.6, 1.95 * len(results))
    rows = content.subfigures(len(results), 1, squeeze=False)[:, 0] if len(results) > 1 else [content]
    for row, (sub, result, label) in enumerate(zip(rows, results, labels)):
        axes = sub.subplots(1, max_tokens + 1)
        box = boxes[row] if boxes is not None else None
        plot_token_maps(result, heads, layers, max_tokens, axes=axes, title="image", box=box)
        heading = f"{label} | generated: {result.caption}"
        sub.suptitle(wrap(heading, chars_per_line(width - 0.6, 7.5)), fontsize=7.5, ha="left", x=0.01)
    label = "cross-attention / map maximum"
    if boxes is not None and any(b is not None for b in boxes):
        label += " (dashed box: the finding's location in the demo truth)"
    overlay_colorbar(fig, None, label, cax=cax, orientation="horizontal")
    return fig
