"""Figure helpers shared by the notebooks' modules, so every figure reads on a laptop screen.

* sizes: :data:`MAX_WIDTH_PX` at :data:`DPI` (the dpi of :func:`medcap_utils.report.save_figure`);
  :func:`fig_width` clamps a requested width, :func:`pixel_size` measures a figure as it is saved;
* text: :func:`wrap` and :func:`wrapped_title` break long titles and captions at word boundaries,
  never cut them;
* maps: :func:`add_colorbar` labels what an overlay's colours mean, :func:`draw_box` draws a
  finding's box (0..1 image coordinates, as ``{split}_demo_truth.csv`` records them);
* runs: :func:`run_palette` gives each run one colour, the same in every figure drawn from the same
  set of runs, with one hue family per notebook (:func:`medcap_utils.papers.run_group`).
"""
from __future__ import annotations

import io
import math
import textwrap
from typing import Iterable, Sequence

MAX_WIDTH_PX = 1400  # a laptop screen shows a figure this wide without scaling it down
DPI = 120  # medcap_utils.report.save_figure's default
MAX_WIDTH_IN = MAX_WIDTH_PX / DPI
OVERLAY_CMAP = "jet"  # attention overlays; add_colorbar says what its ends mean

# One hue family per run group (notebook), in group order; shades tell a group's runs apart.
_FAMILIES = ("Blues", "Oranges", "Greens", "Purples", "Reds", "YlOrBr", "PuRd", "Greys")


def fig_width(requested: float) -> float:
    """``requested`` inches, at most what :data:`MAX_WIDTH_PX` allows at :data:`DPI` (with a margin
    for the tight bounding box)."""
    return min(float(requested), MAX_WIDTH_IN - 0.3)


def pixel_size(fig, dpi: int = DPI) -> tuple[int, int]:
    """(width, height) in pixels of ``fig`` saved as :func:`medcap_utils.report.save_figure` saves it."""
    from PIL import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    buffer.seek(0)
    return Image.open(buffer).size


def chars_per_line(width_in: float, fontsize: float) -> int:
    """How many characters of ``fontsize`` points fit on ``width_in`` inches (average glyph ~0.55 em)."""
    return max(8, int(width_in * 72 / (0.55 * fontsize)))


def wrap(text, width: int = 60) -> str:
    """``text`` broken into lines of at most ``width`` characters at spaces, every word kept whole
    (a word longer than ``width`` gets a line of its own); existing line breaks are kept."""
    lines = []
    for line in str(text).splitlines() or [""]:
        lines += textwrap.wrap(line, width, break_long_words=False, break_on_hyphens=False) or [""]
    return "\n".join(lines)


def wrapped_title(ax, text, fontsize: float = 8, **kwargs):
    """Title ``ax`` with ``text`` wrapped to the axes' width (full text, several lines if needed)."""
    width_in = ax.get_position().width * ax.figure.get_figwidth()
    return ax.set_title(wrap(text, chars_per_line(width_in, fontsize)), fontsize=fontsize, **kwargs)


def grid_shape(n: int, max_cols: int) -> tuple[int, int]:
    """(rows, cols) of a grid holding ``n`` panels with at most ``max_cols`` per row."""
    cols = max(1, min(n, max_cols))
    return max(1, math.ceil(n / cols)), cols


def add_colorbar(fig, mappable, axes, label: str, ticks: Sequence[float] | None = None,
                 ticklabels: Sequence[str] | None = None, cax=None, orientation: str = "vertical"):
    """A colour bar for ``mappable`` beside ``axes`` (one axes or several of the same (sub)figure),
    or drawn into ``cax``; labelled ``label``."""
    if cax is not None:
        bar = fig.colorbar(mappable, cax=cax, orientation=orientation)
    else:
        bar = fig.colorbar(mappable, ax=axes, fraction=0.025, pad=0.01, shrink=0.9, orientation=orientation)
    bar.set_label(label, fontsize=8)
    bar.ax.tick_params(labelsize=7)
    if ticks is not None:
        bar.set_ticks(list(ticks))
        if ticklabels is not None:
            bar.set_ticklabels(list(ticklabels))
    return bar


def overlay_colorbar(fig, axes, label: str = "attention / map maximum", cax=None,
                     orientation: str = "vertical"):
    """The colour bar of :data:`OVERLAY_CMAP` overlays drawn with values in 0..1."""
    import matplotlib as mpl

    mappable = mpl.cm.ScalarMappable(norm=mpl.colors.Normalize(0, 1), cmap=OVERLAY_CMAP)
    return add_colorbar(fig, mappable, axes, label, ticks=(0, 0.5, 1), ticklabels=("0", "0.5", "1"),
                        cax=cax, orientation=orientation)


def colorbar_strip(fig, height_in: float, content_height_in: float):
    """Split ``fig`` (constrained layout) into a content subfigure and a thin strip below it whose
    single axes takes a horizontal colour bar; returns (content subfigure, colour-bar axes). Used
    where the panels live in different subfigures, which one colour bar cannot span."""
    content, strip = fig.subfigures(2, 1, height_ratios=[content_height_in, height_in])
    cax = strip.add_axes([0.3, 0.55, 0.4, 0.2])
    return content, cax


def valid_box(box) -> bool:
    """True for four finite coordinates (an image without a finding has NaN or no box)."""
    try:
        return box is not None and len(box) == 4 and all(math.isfinite(float(v)) for v in box)
    except (TypeError, ValueError):
        return False


def draw_box(ax, box, shape: tuple[int, int], colour: str = "white", lw: float = 1.3):
    """Draw ``box`` = (x0, y0, x1, y1) in 0..1 image coordinates on an image of ``shape`` (H, W);
    returns the rectangle, or None when the box is missing or NaN."""
    from matplotlib.patches import Rectangle

    if not valid_box(box):
        return None
    h, w = shape[:2]
    x0, y0, x1, y1 = (float(v) for v in box)
    # imshow puts pixel centres on integers: the image spans -0.5 .. W-0.5
    patch = Rectangle((x0 * w - 0.5, y0 * h - 0.5), (x1 - x0) * w, (y1 - y0) * h, fill=False, ec=colour, lw=lw,
                      ls="--")
    ax.add_patch(patch)
    return patch


def run_palette(runs: Iterable[str], group=None) -> dict[str, tuple]:
    """One RGBA colour per run: runs of the same group (default :func:`medcap_utils.papers.run_group`)
    share a hue family in shades, groups take families in their order. The mapping depends only on
    the set of runs, so figures drawn from the same runs agree; all colours are distinct."""
    import matplotlib as mpl

    from medcap_utils.papers import run_group

    group = group or (lambda run: run_group(run).label)
    runs = sorted(set(runs))
    by_group: dict[str, list[str]] = {}
    for run in runs:
        by_group.setdefault(group(run), []).append(run)
    order = sorted(by_group, key=lambda g: min(runs.index(r) for r in by_group[g]))
    palette, used = {}, set()
    for k, name in enumerate(order):
        members = by_group[name]
        if k < len(_FAMILIES):
            cmap = mpl.colormaps[_FAMILIES[k]]
            shades = [0.85] if len(members) == 1 else [0.95 - 0.6 * j / (len(members) - 1) for j in range(len(members))]
            colours = [cmap(s) for s in shades]
        else:  # more groups than families: distinct hues from a cyclic map
            colours = [mpl.colormaps["hsv"]((k * 0.137 + j * 0.05) % 1.0) for j in range(len(members))]
        for run, colour in zip(members, colours):
            colour = tuple(round(c, 4) for c in colour)
            while colour in used:  # cannot happen with the shades above; kept so the contract holds
                colour = (max(0.0, colour[0] - 0.01),) + colour[1:]
            used.add(colour)
            palette[run] = colour
    return palette
