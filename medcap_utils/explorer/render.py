"""HTML and pictures of one image's results (an :class:`~medcap_utils.explorer.data.ImageView`), for the explorer.

Plain functions from data to an HTML string or PNG bytes, so they are tested without widgets. Captions are
shown in full (wrapped, never cut) and escaped.
"""
from __future__ import annotations

import io
from html import escape

import numpy as np

from medcap_utils.analysis.attention_maps import AttentionMap
from medcap_utils.explorer.data import ImageView

STYLE = ("<style>.medcap-x table{border-collapse:collapse;width:100%;font-size:13px}"
         ".medcap-x td,.medcap-x th{border-bottom:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top}"
         ".medcap-x td.caption{white-space:normal;word-break:break-word;min-width:18em}"
         ".medcap-x td.num{text-align:right;font-variant-numeric:tabular-nums}"
         ".medcap-x tr.focus{background:#fff6d5}.medcap-x .tp{color:#1a7f37}.medcap-x .fp{color:#b3261e}"
         ".medcap-x .fn{color:#9a6700}.medcap-x .note{color:#666;font-size:12px}</style>")


def _wrap(body: str, css: str) -> str:
    return f'{STYLE}<div class="medcap-x {css}">{body}</div>'


def protocols(view: ImageView) -> list[str]:
    """The protocols with per-image scores among this image's caption runs, in order of appearance."""
    seen = dict.fromkeys(k.split(":", 1)[0] for c in view.captions for k in c.scores)
    return list(seen)


def reference_html(view: ImageView) -> str:
    reference = escape(view.reference) if view.reference is not None else "<i>no reference caption found</i>"
    return _wrap(f'<b>{escape(view.image_id)}</b> <span class="note">({escape(view.split)} split)</span><br>'
                 f'<b>Reference:</b> <span class="medcap-reference-text">{reference}</span>', "medcap-reference")


def captions_html(view: ImageView, protocol: str | None = None, focus_run: str | None = None) -> str:
    """One row per caption run: the run, its full caption and its scores under ``protocol``."""
    if not view.captions:
        return _wrap('<span class="note">no caption run on this split</span>', "medcap-captions")
    metrics = list(dict.fromkeys(k.split(":", 1)[1] for c in view.captions for k in c.scores
                                 if k.split(":", 1)[0] == protocol))
    head = "".join(f"<th>{escape(m)}</th>" for m in metrics)
    rows = []
    for c in view.captions:
        text = escape(c.caption) if c.caption is not None else '<span class="note">no caption for this image</span>'
        cells = "".join(f'<td class="num">{c.scores[f"{protocol}:{m}"]:.3f}</td>' if f"{protocol}:{m}" in c.scores
                        else '<td class="num">–</td>' for m in metrics)
        focus = ' class="focus"' if c.run == focus_run else ""
        rows.append(f'<tr{focus}><td>{escape(c.run)}</td><td class="caption">{text}</td>{cells}</tr>')
    note = (f'<div class="note">per-image scores: {escape(protocol)} (1 = best)</div>' if metrics
            else '<div class="note">no per-image scores for this protocol</div>')
    table = f"<table><tr><th>run</th><th>caption</th>{head}</tr>{''.join(rows)}</table>"
    return _wrap(table + note, "medcap-captions")


def _named(view: ImageView, cuis: list[str], css: str) -> str:
    if not cuis:
        return '<span class="note">none</span>'
    return ", ".join(f'<span class="{css}" title="{escape(c)}">{escape(c)}'
                     f'{" " + escape(view.name(c)) if view.name(c) else ""}</span>' for c in cuis)


def concepts_html(view: ImageView) -> str:
    """Ground truth, then per concept run: found (true positives), wrong (false positives), missed."""
    truth = _named(view, view.concepts, "")
    parts = [f"<b>Ground-truth concepts:</b> {truth}"]
    if not view.concept_runs:
        parts.append('<div class="note">no concept run on this split</div>')
    for check in view.concept_runs:
        scores = ", ".join(f"{k.split(':', 1)[1]} {v:.3f}" for k, v in check.scores.items())
        parts.append(f"<div><b>{escape(check.run)}</b> <span class=\"note\">{escape(scores)}</span><br>"
                     f"found: {_named(view, check.true_positives, 'tp')}<br>"
                     f"wrong: {_named(view, check.false_positives, 'fp')}<br>"
                     f"missed: {_named(view, check.missed, 'fn')}</div>")
    return _wrap("".join(parts), "medcap-concepts")


def _upsample(att: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """One (h, w) map -> image size, bilinear, rescaled to [0, 1] (as :func:`medcap_utils.analysis.explain.upsample`,
    without importing torch into the notebook's kernel)."""
    from PIL import Image

    up = np.asarray(Image.fromarray(np.asarray(att, dtype=np.float32), mode="F")
                    .resize((size[1], size[0]), Image.Resampling.BILINEAR))
    return (up - up.min()) / max(float(up.max() - up.min()), 1e-12)


def attention_png(image: bytes | None, amap: AttentionMap, max_tokens: int = 40, columns: int = 8) -> bytes:
    """The image, then each generated word's map over it (up to ``max_tokens``), as one PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from PIL import Image

    picture = np.asarray(Image.open(io.BytesIO(image)).convert("RGB")) if image else None
    size = picture.shape[:2] if picture is not None else (96, 96)
    n = min(len(amap.tokens), max_tokens)
    rows = 1 + (n // columns)  # first panel: the image alone
    fig = Figure(figsize=(1.5 * columns, 1.65 * rows))
    FigureCanvasAgg(fig)
    maps = [_upsample(m, size) for m in amap.maps[:n]]
    panels = [("image", None)] + [(amap.tokens[k], maps[k]) for k in range(n)]
    for k, (title, att) in enumerate(panels):
        ax = fig.add_subplot(rows, columns, k + 1)
        if picture is not None:
            ax.imshow(picture)
        if att is not None:
            ax.imshow(att, cmap="jet", alpha=0.45 if picture is not None else 1.0, vmin=0, vmax=1)
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    shown = f"first {n} of {len(amap.tokens)} words" if n < len(amap.tokens) else f"{n} words"
    fig.suptitle(f"{amap.run}: {amap.kind} ({shown}; red = most attended)", fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return buffer.getvalue()
