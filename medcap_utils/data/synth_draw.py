"""Rendering of the synthetic demo images, one look per modality (used by synth; notebook 00_data_setup).

Everything is drawn with numpy on bounding boxes of primitives plus a few PIL calls (blur, lines,
JPEG), so 1,600 images take seconds.  ``draw_image`` returns the picture and where the finding ended
up (host organ, side, location words, bounding box); captions are written from that record, so
every word about the finding is backed by pixels.
"""
import math
from fnmatch import fnmatch

import numpy as np
from PIL import Image, ImageDraw

from . import synth_layouts as L
from .synth_paint import blur, extent, grid, jitter, lowfreq, paint

ARROW_RGB = {"white": (255, 255, 255), "red": (235, 20, 20), "yellow": (255, 220, 0),
             "blue": (20, 70, 255), "green": (0, 205, 50)}

# Intensity (0..1) of each tissue per cross-sectional modality.  MRI is T2-like: fluid and fat
# bright, cortical bone and flowing blood dark; PET is an FDG-uptake map shown in a hot colour map.
TISSUE = {
    "CT": dict(fat=.3, muscle=.47, soft=.5, heart=.52, lung=.06, liver=.6, kidney=.72, gland=.68, vessel=.84,
               bone=.97, cortex=.97, marrow=.68, brain=.52, wm=.46, csf=.34, fluid=.38, gas=.02, table=.35,
               disc=.5, nodule=.56, rim=.74, core=.4, cyst=.3, blood=.82, edema=.38, node=.56, effusion=.4),
    "MRI": dict(fat=.8, muscle=.22, soft=.38, heart=.3, lung=.04, liver=.25, kidney=.52, gland=.45, vessel=.04,
                bone=.1, cortex=.07, marrow=.62, brain=.5, wm=.34, csf=.95, fluid=.95, gas=.02, table=None,
                disc=.82, nodule=.55, rim=.14, core=.68, cyst=.98, blood=.2, edema=.85, node=.55, effusion=.95),
    "PET": dict(fat=.04, muscle=.12, soft=.1, heart=.62, lung=.02, liver=.33, kidney=.7, gland=.2, vessel=.18,
                bone=.07, cortex=.07, marrow=.2, brain=.55, wm=.4, csf=.04, fluid=.95, gas=0., table=None,
                disc=.1, nodule=1., rim=1., core=.85, cyst=.02, blood=.5, edema=.1, node=1., effusion=.05),
    "Ultrasound": dict(liver=.5, kidney=.28, sinus=.85, fluid=.02, gland=.6, muscle=.22, soft=.4, myo=.5,
                       bright=.95, shadow=.04, nodule=.16, rim=.2, core=.85, cyst=.01, node=.2, effusion=.02),
}
FRONTAL_VIEWS = {"axial", "coronal", "PA", "AP", "transverse"}
# X-ray attenuation added by a finding.
XRAY_MU = {"nodule": .28, "mass": .35, "effusion": .5, "fracture": -.6}




# ----------------------------------------------------------------------------- finding placement

def _place(entries, hosts, rng, view, knee_side):
    cands = [e for e in entries if e[7] and any(fnmatch(e[7], h) for h in hosts)]
    host = cands[rng.integers(len(cands))]
    _, cx, cy, a, b, ang, _, name = host
    t, phi = math.sqrt(rng.uniform(0, .25)), rng.uniform(0, 2 * math.pi)
    u, v = a * t * math.cos(phi), b * t * math.sin(phi)
    c, s = math.cos(math.radians(ang)), math.sin(math.radians(ang))
    x, y = cx + u * c - v * s, cy + u * s + v * c
    base = name.split("_")[0]
    side = ""
    if view in FRONTAL_VIEWS:
        if name.endswith("_r") or name.endswith("_l"):
            side = "right" if name.endswith("_r") else "left"
        elif base == "brain" and abs(x - cx) > .03:
            side = "right" if x < cx else "left"     # radiological orientation: patient's right on image left
        elif base in ("femur", "tibia", "patella", "medialknee") and knee_side:
            side = knee_side
    return host, x, y, base, side, _location(base, side, view, x, y, host)


def _location(base, side, view, x, y, host):
    sd = side + " " if side else ""
    if base == "lung":
        if view in ("axial",):
            return sd + "lung"
        return sd + ("upper" if y < host[2] else "lower") + " lobe"
    if base == "brain":
        pos = x if view == "sagittal" else y
        if view == "coronal":
            return sd + "cerebral hemisphere"
        return sd + ("frontal" if pos < .4 else "occipital" if pos > .62 else "parietal") + " lobe"
    names = {"liver": "liver", "kidney": "kidney", "bladder": "urinary bladder", "femur": "femur",
             "ilium": "iliac bone", "tibia": "tibia", "patella": "patella", "vertebra": "vertebral body",
             "thyroid": "thyroid lobe" if side else "thyroid gland", "heart": "pericardium",
             "cervical": "cervical region", "hilum": "hilum", "paraaortic": "para-aortic region",
             "iliacnode": "iliac region", "adnexa": "adnexa", "popliteal": "popliteal fossa",
             "medialknee": "medial compartment"}
    return sd + names.get(base, base)


def _finding_prims(finding, x, y, r, host, rng):
    """Primitives of a finding (tissue keys from TISSUE) centred at x, y with radius r."""
    e = lambda t, k=1.0, kb=None, ang=0.0: (t, x, y, r * k, r * (kb if kb is not None else k), ang, 2, None)
    if finding == "nodule":
        return [e("nodule"), ("nodule", x + .35 * r, y - .3 * r, .7 * r, .7 * r, 0, 2, None)]
    if finding == "mass":
        return [e("rim"), e("core", .72, .68, rng.uniform(0, 180))]
    if finding == "cyst":
        return [e("cyst")]
    if finding == "hemorrhage":
        return [e("edema", 1.45), e("blood", 1.0, .85, rng.uniform(0, 180))]
    if finding == "lymphadenopathy":
        return [e("node", 1.0, .7, rng.uniform(0, 180))]
    raise ValueError(finding)


def _effusion_prim(host):
    _, cx, cy, a, b, ang, p, _ = host
    return ("effusion", cx, cy + b * .72, a * 1.05, b * .42, ang, 2, None)


def _fracture_prim(host, x, y, rng):
    return ("fracture", x, y, min(host[3], host[4]) * 1.3, .006, host[5] + rng.uniform(-30, 30) + 90 * (host[4] > host[3]), 2, None)


def _bbox(prims, clip=None):
    xs0, ys0, xs1, ys1 = [], [], [], []
    for pr in prims:
        cx, cy, ex, ey = extent(pr)
        xs0.append(cx - ex), ys0.append(cy - ey), xs1.append(cx + ex), ys1.append(cy + ey)
    box = [min(xs0), min(ys0), max(xs1), max(ys1)]
    if clip is not None:
        cx, cy, ex, ey = extent(clip)
        box = [max(box[0], cx - ex), max(box[1], cy - ey), min(box[2], cx + ex), min(box[3], cy + ey)]
    return [float(min(max(v, 0.0), 1.0)) for v in box]


# ----------------------------------------------------------------------------- modality renderers

def _finish_cross(mod, canvas, rng, S):
    if mod == "CT":
        img = canvas * rng.uniform(.95, 1.05) + rng.normal(0, .02, canvas.shape).astype(np.float32)
        return np.repeat(blur(img, .6)[..., None], 3, axis=2)
    if mod == "MRI":
        X, Y = grid(S)
        bias = 1 + .25 * ((X - .5) * rng.uniform(-1, 1) + (Y - .5) * rng.uniform(-1, 1)) + .05 * lowfreq(rng, S)
        img = blur(canvas, 1.0) * bias * (1 + .07 * lowfreq(rng, S, 24))
        n1, n2 = rng.normal(0, .04, (2, S, S)).astype(np.float32)
        img = np.sqrt((img + n1) ** 2 + n2 ** 2)         # magnitude images have Rician noise
        return np.repeat(img[..., None], 3, axis=2)
    # PET: smooth uptake, counting noise, hot colour map on black
    img = blur(canvas * rng.uniform(.8, 1.0), 3.5)
    img = np.clip(img * (1 + rng.normal(0, .12, img.shape).astype(np.float32)), 0, None)
    img = blur(img, 1.0) * 1.1
    return np.stack([np.clip(3 * img, 0, 1), np.clip(3 * img - 1, 0, 1), np.clip(3 * img - 2, 0, 1)], axis=2)


def _draw_cross(a, rng, S):
    mod, region, view = a["modality"], a["region"], a["view"]
    entries = jitter(L.CROSS_SECTION[(region, view)](a.get("knee_side")), rng)
    tab = TISSUE[mod]
    canvas = np.zeros((S, S), np.float32)
    for t, cx, cy, aa, bb, ang, p, name in entries:
        if t is None or tab.get(t) is None:
            continue
        paint(canvas, tab[t], (t, cx, cy, aa, bb, ang, p, name))
        if t == "bone" and min(aa, bb) > .025:
            paint(canvas, tab["marrow"], ("marrow", cx, cy, aa - .012, bb - .012, ang, p, None))
    info = _draw_finding(a, entries, canvas, rng, S, L.FOV_MM[region], lambda t: tab[t])
    return _finish_cross(mod, canvas, rng, S), info


def _draw_finding(a, entries, canvas, rng, S, fov, value, mode="over"):
    """Place and paint the finding; returns the record the caption and truth CSV use."""
    f = a["finding"]
    if not f:
        return {"side": (a.get("knee_side") or "") if a["view"] in FRONTAL_VIEWS else ""}
    host, x, y, base, side, loc = _place(entries, a["hosts"], rng, a["view"], a.get("knee_side"))
    info = {"host": base, "side": side, "location": loc}
    if f == "pleural effusion":
        pr = _effusion_prim(host)
        paint(canvas, value("effusion"), pr, mode, clip=host)
        info["bbox"] = _bbox([pr], clip=host)
        info["location"] = (side + " " if side else "") + "hemithorax"
        info["center"] = ((info["bbox"][0] + info["bbox"][2]) / 2, (info["bbox"][1] + info["bbox"][3]) / 2)
        info["radius"] = (info["bbox"][3] - info["bbox"][1]) / 2
        return info
    if f == "fracture":
        pr = _fracture_prim(host, x, y, rng)
        paint(canvas, value("fracture") if mode != "over" else value("soft"), pr, mode)
        info["bbox"], info["center"], info["radius"] = _bbox([pr]), (x, y), pr[3]
        return info
    # sized, roughly round findings: cap the size so the finding fits its host organ
    max_mm = 2 * min(host[3], host[4]) * fov * .95
    size_mm = int(round(min(a["size_mm"], max(max_mm, 5))))
    info["size_mm"] = size_mm
    r = max(size_mm / fov / 2, 2.5 / S)
    prims = _finding_prims(f, x, y, r, host, rng)
    for pr in prims:
        paint(canvas, value(pr[0] if mode == "over" else f), pr, mode)
    info["bbox"], info["center"], info["radius"] = _bbox(prims), (x, y), r
    return info


def _draw_xray(a, rng, S):
    entries = jitter(L.XRAY[(a["region"], a["view"])](a.get("knee_side")), rng, rot=3)
    att = np.zeros((S, S), np.float32)
    for pr in entries:
        paint(att, pr[0], pr, "thick")
    info = _draw_finding(a, entries, att, rng, S, L.FOV_MM[a["region"]], XRAY_MU.__getitem__, mode="thick")
    img = 1 - np.exp(-1.9 * np.clip(att, 0, None))
    X, Y = grid(S)
    img = blur(img, 1.1) * (1 - .25 * ((X - .5) ** 2 + (Y - .5) ** 2)) + rng.normal(0, .025, (S, S)).astype(np.float32)
    img = np.clip(img, 0, 1) ** rng.uniform(.85, 1.1) * .92 + .04
    return np.repeat(img[..., None], 3, axis=2), info


def _draw_us(a, rng, S):
    region, view = a["region"], a["view"]
    eff = rng.uniform(.035, .06) if a["finding"] == "pericardial effusion" else 0.0
    fn = L.ULTRASOUND[(region, view)]
    entries = jitter(fn(None, eff) if region == "heart" else fn(None), rng, rot=3, shift=.02)
    tab = TISSUE["Ultrasound"]
    echo = np.full((S, S), .35, np.float32)
    for pr in entries:
        if pr[0] is not None:
            paint(echo, tab[pr[0]], pr)
    if eff:
        heart = [e for e in entries if e[7] == "heart"][0]
        outer = (None, heart[1], heart[2], heart[3] + eff, heart[4] + eff, heart[5], 2, None)
        info = {"host": "heart", "side": "", "location": "pericardium", "bbox": _bbox([outer]),
                "center": (heart[1], heart[2] - heart[4] - eff / 2), "radius": eff / 2}
    else:
        info = _draw_finding(a, entries, echo, rng, S, L.US_FOV_MM[region], lambda t: tab[t])
        if a["finding"] == "cyst":   # posterior acoustic enhancement below an anechoic cyst
            cx, cy = info["center"]
            r = info["radius"]
            paint(echo, .25, (None, cx, cy + r + .12, r * .9, .12, 0, 4, None), "add")
    img = blur(echo * rng.rayleigh(.8, (S, S)).astype(np.float32), .7)
    X, Y = grid(S)
    if region == "neck":           # linear probe: rectangular field
        mask = ((X > .06) & (X < .94) & (Y > .04) & (Y < .97)).astype(np.float32)
        depth = Y
    else:                          # curved / phased array: sector
        dx, dy = X - .5, Y + .02
        depth = np.sqrt(dx * dx + dy * dy)
        ang = np.degrees(np.arctan2(dx, dy))
        half = 30 if region == "heart" else 38
        mask = ((depth < .97) & (depth > .08) & (np.abs(ang) < half)).astype(np.float32)
    img = img * mask * (1.1 - .5 * depth)
    for k in range(1, 10):         # depth-scale ticks, as on every scanner screen
        img[int(k * .1 * S), int(.965 * S):int(.985 * S)] = .8
    return np.repeat(np.clip(img, 0, 1)[..., None], 3, axis=2), info


# ----------------------------------------------------------------------------- angiography

def _grow(segs, x, y, ang, length, width, depth, rng, vessel, spread=32.0):
    ex, ey = x + length * math.cos(math.radians(ang)), y + length * math.sin(math.radians(ang))
    segs.append(((x, y), (ex, ey), width, vessel))
    if depth == 0:
        return
    for sgn in (-1, 1):
        a2 = ang + sgn * spread * rng.uniform(.6, 1.3) + rng.normal(0, 6)
        _grow(segs, ex, ey, a2, length * rng.uniform(.62, .8), max(width * .68, 1.0), depth - 1, rng, vessel, spread)


def _angio_tree(a, rng):
    region, view, side = a["region"], a["view"], a.get("angio_side", "right")
    segs, ghosts = [], []
    if region == "head":
        sx = -1 if side == "right" else 1
        if view == "AP":
            x0 = .5 + sx * .1
            segs.append(((x0, 1.02), (x0 + sx * .02, .62), 9, "ica"))
            _grow(segs, x0 + sx * .02, .62, 180 + 15 if sx < 0 else -15, .17, 6, 4, rng, "mca")
            _grow(segs, x0 + sx * .02, .62, -80 if sx < 0 else -100, .18, 5, 3, rng, "aca", 25)
            ghosts.append((.5, .5, .4, .46))
        else:
            segs.append(((.55, 1.02), (.52, .62), 9, "ica"))
            _grow(segs, .52, .62, -110, .17, 6, 4, rng, "mca")
            _grow(segs, .52, .62, -155, .2, 5, 3, rng, "aca", 22)
            _grow(segs, .52, .62, -45, .14, 4, 3, rng, "pca", 25)
            ghosts.append((.5, .45, .44, .38))
    elif region == "heart":
        rx = .38 if view == "LAO" else .62
        segs.append(((.5, 1.02), (rx, .22), 3, "catheter"))
        _grow(segs, rx, .22, 70 if view == "LAO" else 110, .18, 7, 4, rng, "lad", 28)
        _grow(segs, rx, .22, 160 if view == "LAO" else 20, .15, 6, 3, rng, "lcx", 28)
        ghosts.append((.5, .56, .33, .3))
    elif region == "abdomen":
        segs.append(((.5, -.02), (.5, 1.02), 16, "aorta"))
        _grow(segs, .5, .42, 190, .12, 7, 3, rng, "renal_r", 28)
        _grow(segs, .5, .42, -10, .12, 7, 3, rng, "renal_l", 28)
        _grow(segs, .5, .34, 80, .18, 6, 4, rng, "sma", 24)
    else:  # pelvis
        segs.append(((.5, -.02), (.5, .3), 15, "aorta"))
        for sx, nm in ((-1, "iliac_r"), (1, "iliac_l")):
            segs.append(((.5, .3), (.5 + sx * .2, .62), 11, nm))
            segs.append(((.5 + sx * .2, .62), (.5 + sx * .26, 1.02), 10, nm))
            _grow(segs, .5 + sx * .14, .52, 90 - sx * 35, .12, 6, 3, rng, nm, 26)
    return segs, ghosts


def _draw_angio(a, rng, S):
    segs, ghosts = _angio_tree(a, rng)
    bg = int(rng.integers(190, 215))
    im = Image.new("L", (S, S), bg)
    dr = ImageDraw.Draw(im)
    for cx, cy, ex, ey in ghosts:   # faint residue of bone / cardiac silhouette after subtraction
        dr.ellipse([(cx - ex) * S, (cy - ey) * S, (cx + ex) * S, (cy + ey) * S], outline=bg - 14, width=3)
    dark = int(rng.integers(45, 75))
    px = lambda p: (p[0] * S, p[1] * S)
    for p0, p1, w, vessel in segs:
        dr.line([px(p0), px(p1)], fill=dark - 15 if vessel == "catheter" else dark, width=max(int(round(w)), 1))
        dr.ellipse([p1[0] * S - w / 2, p1[1] * S - w / 2, p1[0] * S + w / 2, p1[1] * S + w / 2], fill=dark)
    info = {"side": ""}
    f = a["finding"]
    if f:
        ok = [s for s in segs if s[2] >= 3.5 and s[3] not in ("catheter", "aorta")]
        p0, p1, w, vessel = ok[rng.integers(len(ok))]
        x, y = (p0[0] + p1[0]) / 2, (p0[1] + p1[1]) / 2
        base = vessel.split("_")[0]
        side = a.get("angio_side", "") if a["region"] == "head" and a["view"] == "AP" else \
            {"r": "right", "l": "left"}.get(vessel.split("_")[-1], "") if "_" in vessel else ""
        names = {"ica": "internal carotid artery", "mca": "middle cerebral artery", "aca": "anterior cerebral artery",
                 "pca": "posterior cerebral artery", "lad": "left anterior descending artery",
                 "lcx": "circumflex artery", "renal": "renal artery", "sma": "superior mesenteric artery",
                 "iliac": "iliac artery"}
        loc = (side + " " if side else "") + names[base]
        info = {"host": base, "side": side, "location": loc, "center": (x, y)}
        if f == "stenosis":
            t0, t1 = .42, .58
            q0 = (p0[0] + t0 * (p1[0] - p0[0]), p0[1] + t0 * (p1[1] - p0[1]))
            q1 = (p0[0] + t1 * (p1[0] - p0[0]), p0[1] + t1 * (p1[1] - p0[1]))
            dr.line([px(q0), px(q1)], fill=bg, width=int(w) + 3)
            dr.line([px(q0), px(q1)], fill=dark, width=max(1, int(w // 3.5)))
            r = max(math.dist(q0, q1) / 2, w / S)
            info["radius"] = r
        else:  # saccular aneurysm beside the vessel
            size_mm = int(a["size_mm"])
            r = max(size_mm / L.ANGIO_FOV_MM[a["region"]] / 2, 3 / S)
            ang = math.atan2(p1[1] - p0[1], p1[0] - p0[0]) + math.pi / 2 * (1 if rng.random() < .5 else -1)
            x, y = x + math.cos(ang) * (r * .8 + w / 2 / S), y + math.sin(ang) * (r * .8 + w / 2 / S)
            dr.ellipse([(x - r) * S, (y - r) * S, (x + r) * S, (y + r) * S], fill=dark)
            info.update(size_mm=size_mm, center=(x, y), radius=r)
        r = info["radius"]
        info["bbox"] = [float(min(max(v, 0.0), 1.0)) for v in (info["center"][0] - r, info["center"][1] - r,
                                                              info["center"][0] + r, info["center"][1] + r)]
    img = blur(np.asarray(im, dtype=np.float32) / 255.0, .8)
    img = img + .03 * lowfreq(rng, S) + rng.normal(0, .02, (S, S)).astype(np.float32)
    return np.repeat(np.clip(img, 0, 1)[..., None], 3, axis=2), info


# ----------------------------------------------------------------------------- arrows and entry point

def draw_arrow(im, center, radius, colour, rng):
    """Arrow of a named colour whose tip touches the finding; returns its tip and tail (0..1)."""
    S = im.size[0]
    dr = ImageDraw.Draw(im)
    length = rng.uniform(.11, .16) * S
    start = rng.uniform(0, 2 * math.pi)
    for k in range(16):
        th = start + k * math.pi / 8
        c, s = math.cos(th), math.sin(th)
        tip = (center[0] * S + c * (radius * S + 3), center[1] * S + s * (radius * S + 3))
        tail = (tip[0] + c * length, tip[1] + s * length)
        if all(6 <= v <= S - 6 for v in (*tip, *tail)):
            break
    head = 9
    left = (tip[0] + head * math.cos(th + .45), tip[1] + head * math.sin(th + .45))
    right = (tip[0] + head * math.cos(th - .45), tip[1] + head * math.sin(th - .45))
    rgb = ARROW_RGB[colour]
    dr.line([tail, (tip[0] + c * head * .7, tip[1] + s * head * .7)], fill=rgb, width=3)
    dr.polygon([tip, left, right], fill=rgb)
    return (tip[0] / S, tip[1] / S), (tail[0] / S, tail[1] / S)


def draw_image(a, rng, size=256):
    """Draw one image for attributes ``a`` (see synth.sample_attributes); returns (PIL RGB, info)."""
    mod = a["modality"]
    if mod in ("CT", "MRI", "PET"):
        arr, info = _draw_cross(a, rng, size)
    elif mod == "X-ray":
        arr, info = _draw_xray(a, rng, size)
    elif mod == "Ultrasound":
        arr, info = _draw_us(a, rng, size)
    else:
        arr, info = _draw_angio(a, rng, size)
    im = Image.fromarray((np.clip(arr, 0, 1) * 255).astype(np.uint8), "RGB")
    if a["finding"] and a["arrow_colour"]:
        draw_arrow(im, info["center"], info["radius"], a["arrow_colour"], rng)
    return im, info
