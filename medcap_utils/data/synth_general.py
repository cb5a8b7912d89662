"""A second synthetic domain, *general* images and captions: the demo's stand-in for web images and COCO
(notebook 00_data_setup builds it; ``medcap standins`` pretrains the demo's stand-in models on it, issue 17).

Every image is a scene of one to three coloured shapes (kind, colour, size, place on a 3 x 3 grid) on a plain
or textured background, and its caption says exactly that, by a fixed grammar::

    a large red circle in the upper left and a small blue square at the bottom on a striped background.

Shapes are named in reading order (top row first, left to right), so a caption is a function of the scene
and a captioner can learn it from the pixels. The files are written in the ROCOv2 layout of ``data/demo``
(``{split}/`` images, ``{split}_captions.csv``, concept files, ``cui_mapping.csv``), so the training code reads
them unchanged. General images have no UMLS concepts: every concept field is empty (allowed by the readers,
as for the few real ROCOv2 images without a CUI). ``{split}_general_truth.csv`` lists each scene's shapes.
Deterministic: each image has its own random stream (seed, split, number).
"""
from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "star")
COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (50, 90, 230), "yellow": (240, 220, 40),
           "purple": (150, 60, 200), "orange": (250, 140, 20), "white": (245, 245, 245)}
SIZES = {"small": 0.16, "large": 0.28}  # shape radius as a share of the image side
#: 3 x 3 grid cell (row, column) -> the caption's words for it
PLACES = {(0, 0): "in the upper left", (0, 1): "at the top", (0, 2): "in the upper right",
          (1, 0): "on the left", (1, 1): "in the centre", (1, 2): "on the right",
          (2, 0): "in the lower left", (2, 1): "at the bottom", (2, 2): "in the lower right"}
#: background -> words appended to the caption ("" for the plain one)
BACKGROUNDS = {"plain": "", "striped": " on a striped background", "dotted": " on a dotted background"}
COUNT_WEIGHTS = (0.5, 0.35, 0.15)  # one, two or three shapes
TRUTH_COLUMNS = ["ID", "n_shapes", "shapes", "background"]


def sample_scene(rng: np.random.Generator) -> dict:
    """Random content of one image: shapes (kind, colour, size, grid cell) in reading order and a background."""
    n = int(rng.choice(len(COUNT_WEIGHTS), p=COUNT_WEIGHTS)) + 1
    cells = sorted(int(c) for c in rng.choice(9, size=n, replace=False))  # distinct cells, reading order
    colours, sizes = list(COLOURS), list(SIZES)
    shapes = [{"kind": SHAPES[int(rng.integers(len(SHAPES)))], "colour": colours[int(rng.integers(len(colours)))],
               "size": sizes[int(rng.integers(len(sizes)))], "cell": (c // 3, c % 3)} for c in cells]
    return {"shapes": shapes, "background": list(BACKGROUNDS)[int(rng.choice(3, p=[0.6, 0.2, 0.2]))]}


def caption_of(scene: dict) -> str:
    """The scene's caption by the grammar of the module docstring."""
    parts = [f"a {s['size']} {s['colour']} {s['kind']} {PLACES[s['cell']]}" for s in scene["shapes"]]
    text = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return text + BACKGROUNDS[scene["background"]] + "."


def _star(cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    angles = np.pi / 2 + np.arange(10) * np.pi / 5
    radii = np.where(np.arange(10) % 2 == 0, r, 0.45 * r)
    return [(cx + rr * np.cos(a), cy - rr * np.sin(a)) for a, rr in zip(angles, radii)]


def draw_scene(scene: dict, rng: np.random.Generator, size: int = 256) -> Image.Image:
    """The scene drawn at ``size`` x ``size``: background, then each shape centred in its cell (jittered)."""
    grey = int(rng.integers(20, 70))
    im = Image.new("RGB", (size, size), (grey, grey, grey))
    d = ImageDraw.Draw(im)
    light = (grey + 45,) * 3
    if scene["background"] == "striped":
        step = max(4, size // 16)
        for x in range(-size, size, step):
            d.line([(x, 0), (x + size, size)], fill=light, width=max(1, step // 3))
    elif scene["background"] == "dotted":
        step = max(4, size // 12)
        for y in range(step // 2, size, step):
            for x in range(step // 2, size, step):
                d.ellipse([x - step / 6, y - step / 6, x + step / 6, y + step / 6], fill=light)
    cell = size / 3
    for s in scene["shapes"]:
        row, col = s["cell"]
        jitter = rng.uniform(-0.08, 0.08, size=2) * cell
        cx, cy = (col + 0.5) * cell + jitter[0], (row + 0.5) * cell + jitter[1]
        r = SIZES[s["size"]] * size * 0.5 * float(rng.uniform(0.9, 1.1))
        colour = COLOURS[s["colour"]]
        if s["kind"] == "circle":
            d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
        elif s["kind"] == "square":
            d.rectangle([cx - 0.85 * r, cy - 0.85 * r, cx + 0.85 * r, cy + 0.85 * r], fill=colour)
        elif s["kind"] == "triangle":
            d.polygon([(cx, cy - r), (cx - r, cy + 0.8 * r), (cx + r, cy + 0.8 * r)], fill=colour)
        else:
            d.polygon(_star(cx, cy, r), fill=colour)
    return im


def _render_one(seed: int, si: int, split: str, num: int, size: int):
    iid = f"GENERAL_{split}_{num:06d}"
    rng = np.random.default_rng([seed, si, num, 104729])
    scene = sample_scene(rng)
    buf = io.BytesIO()
    draw_scene(scene, rng, size).save(buf, "JPEG", quality=92, subsampling=0)
    shapes = ";".join(f"{s['size']}:{s['colour']}:{s['kind']}:{s['cell'][0]}{s['cell'][1]}" for s in scene["shapes"])
    return iid, buf.getvalue(), caption_of(scene), [iid, len(scene["shapes"]), shapes, scene["background"]]


def _write_csv(path: Path, header: list[str], rows: list) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def synthesize_general(out_dir: str | Path, seed: int = 0, n_train: int = 3000, n_valid: int = 300, n_test: int = 0,
                       image_size: int = 256) -> dict:
    """Write the general domain to ``out_dir`` in the ROCOv2 layout (splits with 0 images are left out);
    returns a summary (counts, distinct captions, seconds). Byte-identical output for the same arguments."""
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    counts = {s: n for s, n in zip(("train", "valid", "test"), (n_train, n_valid, n_test)) if n > 0}
    summary = {"out_dir": str(out), "seed": seed, "image_size": image_size, "splits": counts, "distinct_captions": {}}
    licence = []
    for si, (split, n) in enumerate(counts.items()):
        (out / split).mkdir(exist_ok=True)
        caps, empty, truth = [], [], []
        for num in range(1, n + 1):
            iid, data, caption, row = _render_one(seed, si, split, num, image_size)
            (out / split / f"{iid}.jpg").write_bytes(data)
            caps.append([iid, caption])
            empty.append([iid, ""])
            truth.append(row)
            licence.append([iid, f"Synthetic scene drawn by medcap_utils.data.synth_general (seed {seed})", "CC0 1.0"])
        _write_csv(out / f"{split}_captions.csv", ["ID", "Caption"], caps)
        _write_csv(out / f"{split}_concepts.csv", ["ID", "CUIs"], empty)
        _write_csv(out / f"{split}_concepts_manual.csv", ["ID", "CUIs"], empty)
        _write_csv(out / f"{split}_general_truth.csv", TRUTH_COLUMNS, truth)
        summary["distinct_captions"][split] = len({c for _, c in caps})
    _write_csv(out / "cui_mapping.csv", ["CUI", "Canonical name"], [])
    _write_csv(out / "license_information.csv", ["ID", "Attribution", "License"], licence)
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    return summary
