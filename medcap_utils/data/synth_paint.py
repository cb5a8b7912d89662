"""Rasterising the synthetic demo images' primitives with numpy (used by synth_draw; notebook 00_data_setup).

A primitive is ``(tissue, cx, cy, a, b, angle, p, name)``: a super-ellipse of exponent ``p`` centred at ``(cx, cy)``
with half axes ``a, b`` in image fractions. ``paint`` blends one into a float canvas (anti-aliased, optionally
clipped to another, or as an X-ray path length), ``extent`` and ``jitter`` place them, and ``blur``, ``lowfreq`` and
``grid`` are the smooth fields the modality renderers shade with.
"""
import math

import numpy as np
from PIL import Image, ImageFilter


def _box(S, prim):
    """Bounding-box slices of a super-ellipse primitive and q = d**p (q < 1 inside, d the scaled radius)."""
    _, cx, cy, a, b, ang, p, _ = prim
    r = max(a, b) * (1.42 if p > 2 else 1.0) + 2.0 / S
    x0, x1 = max(int((cx - r) * S), 0), min(int((cx + r) * S) + 2, S)
    y0, y1 = max(int((cy - r) * S), 0), min(int((cy + r) * S) + 2, S)
    if x0 >= x1 or y0 >= y1:
        return None
    xs = (np.arange(x0, x1, dtype=np.float32) + .5) / S - cx
    ys = (np.arange(y0, y1, dtype=np.float32) + .5) / S - cy
    c, s = math.cos(math.radians(ang)), math.sin(math.radians(ang))
    u = xs[None, :] * (c / a) + ys[:, None] * (s / a)
    v = ys[:, None] * (c / b) - xs[None, :] * (s / b)
    if p == 3:
        q = np.abs(u) ** 3 + np.abs(v) ** 3
    else:
        u *= u
        v *= v
        if p == 4:
            u *= u
            v *= v
        q = u
        q += v
    return (slice(y0, y1), slice(x0, x1)), q


def _alpha(q, prim, S, soft=1.0):
    """Anti-aliased 0..1 coverage; near the edge 1 - d is about (1 - d**p) / p."""
    k = min(prim[3], prim[4]) * S / soft / prim[6]
    w = np.subtract(1.0, q, dtype=np.float32)
    w *= k
    w += .5
    return np.clip(w, 0.0, 1.0, out=w)


def paint(canvas, value, prim, mode="over", clip=None):
    """Paint ``value`` where ``prim`` lies; ``clip`` restricts it to inside another primitive.

    mode "over" blends towards value, "add" adds it, "thick" adds value times the path length
    through an ellipsoid (X-ray projection)."""
    S = canvas.shape[0]
    got = _box(S, prim)
    if got is None:
        return
    sl, q = got
    if mode == "thick":
        d2 = q if prim[6] == 2 else q ** (2.0 / prim[6])
        w = np.sqrt(np.clip(1.0 - d2, 0.0, 1.0))
    else:
        w = _alpha(q, prim, S)
    if clip is not None:
        cg = _box(S, clip)
        if cg is None:
            return
        full = np.zeros_like(canvas)
        full[cg[0]] = _alpha(cg[1], clip, S)
        w = w * full[sl]
    if mode == "over":
        canvas[sl] += w * (value - canvas[sl])
    else:
        canvas[sl] += w * value


def extent(prim):
    """Axis-aligned half extents of a rotated ellipse."""
    _, cx, cy, a, b, ang, _, _ = prim
    c, s = abs(math.cos(math.radians(ang))), abs(math.sin(math.radians(ang)))
    return cx, cy, math.hypot(a * c, b * s), math.hypot(a * s, b * c)


def jitter(entries, rng, rot=4.0, scale=(.93, 1.05), shift=.03):
    """Small random pose and shape changes, so no two images of a class are identical."""
    s = rng.uniform(*scale)
    dx, dy = rng.uniform(-shift, shift, 2)
    th = math.radians(rng.uniform(-rot, rot))
    c, sn = math.cos(th), math.sin(th)
    out = []
    for t, cx, cy, a, b, ang, p, name in entries:
        x, y = cx - .5, cy - .5
        k = rng.uniform(.96, 1.04, 2)
        out.append((t, .5 + s * (c * x - sn * y) + dx, .5 + s * (sn * x + c * y) + dy,
                    a * s * k[0], b * s * k[1], ang + math.degrees(th), p, name))
    return out


def blur(arr, r):
    im = Image.fromarray(np.clip(arr * 255, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(r))
    return np.asarray(im, dtype=np.float32) / 255.0


def lowfreq(rng, S, n=6):
    """Smooth random field in about -1..1 (bias fields, shading)."""
    im = Image.fromarray(rng.normal(0, 1, (n, n)).astype(np.float32), mode="F")
    return np.asarray(im.resize((S, S), Image.BICUBIC), dtype=np.float32)


def grid(S):
    g = (np.arange(S, dtype=np.float32) + .5) / S
    return g[None, :], g[:, None]
