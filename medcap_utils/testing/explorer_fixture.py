"""A tiny reports folder and data folder in the real formats, for the results explorer's tests.

``write_explorer_fixture(out)`` writes, deterministically and in well under a second:

- ``out/data``: the ROCOv2 layout (``{split}_captions.csv``, ``{split}_concepts.csv``, ``cui_mapping.csv``,
  ``{split}/<ID>.jpg``) with four test and two validation images;
- ``out/reports/runs``: what notebooks 02-08 leave there (``run.json`` + run file by
  :func:`medcap_utils.evaluation.runfiles.write_run_dir`, per-image scores in ``eval_<protocol>/per_image.csv``
  computed by the project's metric code): three caption runs and a concept run on the test split, a
  caption run on the validation split, and attention maps (:mod:`medcap_utils.analysis.attention_maps`) for one
  test image of ``xai-lstm-demo``.

The formats were checked against a full demo run (``make repeat-check``'s ``build/repeat/a``).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

CUI_NAMES = {"C0000726": "Abdomen", "C0006104": "Brain", "C0010709": "Cyst", "C0022646": "Kidney",
             "C0023884": "Liver", "C0024109": "Lung", "C0024485": "Magnetic Resonance Imaging",
             "C0028259": "Nodule", "C0040405": "X-Ray Computed Tomography", "C0041618": "Ultrasonography",
             "C0577559": "Mass of body structure", "C0817096": "Chest", "C1306645": "Plain x-ray"}
# split -> [(ID, reference caption, ground-truth CUIs, (x, y) of the bright spot in 0..1)]
IMAGES = {
    "test": [
        ("ROCOv2_2023_test_000001", "Chest X-ray (posteroanterior view) shows a nodule in the right upper lobe "
         "(red arrow).", ["C1306645", "C0817096", "C0024109", "C0028259"], (0.3, 0.3)),
        ("ROCOv2_2023_test_000002", "Axial CT of the abdomen demonstrates a 41 mm mass in the liver.",
         ["C0040405", "C0000726", "C0023884", "C0577559"], (0.6, 0.5)),
        ("ROCOv2_2023_test_000003", "Sagittal MRI of the brain shows no abnormality.", ["C0024485", "C0006104"],
         (0.5, 0.4)),
        ("ROCOv2_2023_test_000004", "Abdominal ultrasound shows a cyst in the left kidney (yellow arrow).",
         ["C0041618", "C0000726", "C0022646", "C0010709"], (0.7, 0.6)),
    ],
    "valid": [
        ("ROCOv2_2023_valid_000001", "Axial CT of the chest shows a mass in the left lung.",
         ["C0040405", "C0817096", "C0024109", "C0577559"], (0.65, 0.45)),
        ("ROCOv2_2023_valid_000002", "Chest X-ray shows no abnormality.", ["C1306645", "C0817096"], (0.5, 0.5)),
    ],
}
CAPTION_RUNS = {  # run -> (split, {ID: caption}); every run words each image differently
    "blip_demo_test": ("test", {
        "ROCOv2_2023_test_000001": "chest x - ray showing a nodule in the right upper lobe ( red arrow ).",
        "ROCOv2_2023_test_000002": "axial ct of the abdomen with a mass in the liver.",
        "ROCOv2_2023_test_000003": "mri of the brain with a mass in the left hemisphere.",
        "ROCOv2_2023_test_000004": "ultrasound of the abdomen showing a cyst in the left kidney ( yellow arrow ).",
    }),
    "xai-lstm-demo": ("test", {
        "ROCOv2_2023_test_000001": "x - ray of the chest with a nodule in the lung",
        "ROCOv2_2023_test_000002": "ct of the chest with a nodule in the lung",
        "ROCOv2_2023_test_000003": "sagittal mri of the brain shows no abnormality",
        "ROCOv2_2023_test_000004": "ultrasound of the kidney",
    }),
    "baseline-most-frequent-caption": ("test", {i: "Abdominal radiograph (anteroposterior view): unremarkable."
                                                for i, *_ in IMAGES["test"]}),
    "decoding_blip_base_greedy": ("valid", {
        "ROCOv2_2023_valid_000001": "axial ct of the chest with a mass in the left lung.",
        "ROCOv2_2023_valid_000002": "x - ray of the abdomen.",
    }),
}
CONCEPT_RUN = ("medcsra-demo-test", {  # true positives, a false positive, misses
    "ROCOv2_2023_test_000001": ["C1306645", "C0817096", "C0577559"],
    "ROCOv2_2023_test_000002": ["C0040405", "C0000726", "C0023884", "C0577559"],
    "ROCOv2_2023_test_000003": ["C0024485"],
    "ROCOv2_2023_test_000004": ["C0041618", "C0022646"],
})
ATTENTION_IMAGE = ("xai-lstm-demo", "ROCOv2_2023_test_000001")


@dataclass
class ExplorerFixture:
    root: Path
    reports: Path
    data: Path
    ids: dict  # split -> [ID, ...]


def _write_csv(path: Path, header, rows) -> None:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _image(spot, size: int = 160) -> "Image.Image":
    from PIL import Image, ImageDraw

    picture = Image.new("RGB", (size, size), (22, 22, 22))
    draw = ImageDraw.Draw(picture)
    draw.ellipse((12, 12, size - 12, size - 12), fill=(90, 90, 90))
    x, y = spot[0] * size, spot[1] * size
    draw.ellipse((x - 12, y - 12, x + 12, y + 12), fill=(235, 235, 235))
    return picture


def write_data(data: Path) -> None:
    data.mkdir(parents=True, exist_ok=True)
    _write_csv(data / "cui_mapping.csv", ("CUI", "Canonical name"), sorted(CUI_NAMES.items()))
    for split, rows in IMAGES.items():
        _write_csv(data / f"{split}_captions.csv", ("ID", "Caption"), [(i, c) for i, c, *_ in rows])
        _write_csv(data / f"{split}_concepts.csv", ("ID", "CUIs"), [(i, ";".join(cuis)) for i, _, cuis, _ in rows])
        (data / split).mkdir(exist_ok=True)
        for image_id, _, _, spot in rows:
            _image(spot).save(data / split / f"{image_id}.jpg", quality=90)


def _attention(tokens: list[str], spot, grid: int = 8) -> np.ndarray:
    """One Gaussian map per word, drifting from the image centre towards the bright spot."""
    ys, xs = np.mgrid[0:grid, 0:grid] / (grid - 1)
    maps = []
    for k in range(len(tokens)):
        t = k / max(len(tokens) - 1, 1)
        cx, cy = 0.5 + t * (spot[0] - 0.5), 0.5 + t * (spot[1] - 0.5)
        m = np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / 0.05)
        maps.append(m / m.sum())
    return np.stack(maps)


def write_explorer_fixture(out) -> ExplorerFixture:
    from medcap_utils.analysis.attention_maps import write_attention_maps
    from medcap_utils.evaluation.runfiles import write_run_dir
    from medcap_utils.metrics.concepts import per_image_f1
    from medcap_utils.metrics.imageclef import evaluate_imageclef

    root = Path(out)
    data, runs = root / "data", root / "reports" / "runs"
    write_data(data)
    refs = {i: c for rows in IMAGES.values() for i, c, *_ in rows}
    truth = {i: cuis for rows in IMAGES.values() for i, _, cuis, _ in rows}
    for name, (split, captions) in CAPTION_RUNS.items():
        run_dir = write_run_dir(name, "captions", split, str(data), captions, {"fixture": True}, runs)
        ids = list(captions)
        scored = evaluate_imageclef([refs[i] for i in ids], [captions[i] for i in ids], "imageclef2024",
                                    metrics=["rouge1"])
        (run_dir / "eval_imageclef2024").mkdir()
        _write_csv(run_dir / "eval_imageclef2024" / "per_image.csv", ("ID", "reference", "hypothesis", "rouge1"),
                   [(i, refs[i], captions[i], *(float(scored["per_image"][m][k]) for m in ("rouge1",)))
                    for k, i in enumerate(ids)])
    name, predicted = CONCEPT_RUN
    run_dir = write_run_dir(name, "concepts", "test", str(data), predicted, {"fixture": True}, runs)
    f1 = per_image_f1({i: truth[i] for i in predicted}, predicted)
    (run_dir / "eval_concepts").mkdir()
    _write_csv(run_dir / "eval_concepts" / "per_image.csv", ("ID", "reference", "hypothesis", "f1_primary"),
               [(i, ";".join(truth[i]), ";".join(predicted[i]), f1[i]) for i in predicted])
    run, image_id = ATTENTION_IMAGE
    tokens = CAPTION_RUNS[run][1][image_id].split()
    spot = next(s for i, _, _, s in IMAGES["test"] if i == image_id)
    write_attention_maps(runs / run, [image_id], [tokens], [_attention(tokens, spot)], "visual attention (fixture)")
    return ExplorerFixture(root, root / "reports", data, {s: [i for i, *_ in rows] for s, rows in IMAGES.items()})
