"""Learnable synthetic demo dataset in the exact ROCOv2 on-disk layout (notebook 00_data_setup).

``synthesize(out_dir, seed)`` draws images of six modalities (CT, MRI, X-ray, ultrasound,
angiography, PET), each with a body region, a view and usually a finding marked by a coloured
arrow, and writes captions, UMLS concepts and a ground-truth table.  Every word a caption says
about an image is visible in its pixels, so a captioner that learns beats a most-frequent-caption
baseline by a wide margin.  Each image has its own random stream (seed, split, number), so the
output is byte-identical for a seed and independent of drawing order.
"""
import csv
import io
import multiprocessing as mp
import os
import time
import zipfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from .synth_draw import draw_image
from .synth_text import make_caption

SPLITS = ("train", "valid", "test")
MODALITY_CUI = {"CT": "C0040405", "MRI": "C0024485", "X-ray": "C1306645", "Ultrasound": "C0041618",
                "Angiography": "C0002978", "PET": "C0032743"}
# CT and X-ray are the largest ROCOv2 modalities (seed 000: CT 24,227, X-ray 19,363 training images).
MODALITY_WEIGHT = {"CT": 32, "X-ray": 26, "MRI": 17, "Ultrasound": 10, "Angiography": 8, "PET": 7}

# modality -> region -> (weight, views, [(finding, weight, host organs)])
CATALOG = {
    "CT": {
        "chest": (36, ["axial", "coronal", "sagittal"],
                  [("nodule", 40, ["lung*"]), ("mass", 30, ["lung*"]), ("pleural effusion", 30, ["lung*"])]),
        "abdomen": (30, ["axial", "coronal"],
                    [("mass", 35, ["liver"]), ("cyst", 45, ["liver", "kidney*"]), ("lymphadenopathy", 20, ["paraaortic"])]),
        "head": (20, ["axial", "coronal", "sagittal"], [("hemorrhage", 60, ["brain"]), ("mass", 40, ["brain"])]),
        "pelvis": (8, ["axial", "coronal"], [("fracture", 50, ["femur*", "ilium*"]), ("mass", 50, ["bladder"])]),
        "neck": (6, ["axial", "sagittal"], [("lymphadenopathy", 70, ["cervical*"]), ("nodule", 30, ["thyroid*"])]),
    },
    "MRI": {
        "head": (40, ["axial", "coronal", "sagittal"], [("mass", 50, ["brain"]), ("cyst", 50, ["brain"])]),
        "spine": (20, ["sagittal", "axial"], [("fracture", 50, ["vertebra"]), ("mass", 50, ["vertebra"])]),
        "knee": (15, ["sagittal", "coronal"], [("cyst", 50, ["popliteal", "medialknee"]), ("fracture", 50, ["femur", "tibia"])]),
        "abdomen": (15, ["axial", "coronal"], [("cyst", 60, ["liver", "kidney*"]), ("mass", 40, ["liver"])]),
        "pelvis": (10, ["axial", "sagittal"], [("mass", 50, ["bladder"]), ("cyst", 50, ["adnexa*"])]),
    },
    "X-ray": {
        "chest": (55, ["PA", "lateral"],
                  [("nodule", 35, ["lung*"]), ("mass", 25, ["lung*"]), ("pleural effusion", 40, ["lung*"])]),
        "knee": (13, ["AP", "lateral"], [("fracture", 100, ["femur", "tibia", "patella"])]),
        "pelvis": (12, ["AP"], [("fracture", 100, ["femur*", "ilium*"])]),
        "spine": (10, ["AP", "lateral"], [("fracture", 100, ["vertebra"])]),
        "abdomen": (10, ["AP"], [("mass", 100, ["liver"])]),
    },
    "Ultrasound": {
        "abdomen": (40, ["longitudinal", "transverse"], [("cyst", 60, ["liver", "kidney"]), ("mass", 40, ["liver"])]),
        "neck": (25, ["transverse", "longitudinal"], [("nodule", 75, ["thyroid*"]), ("cyst", 25, ["thyroid*"])]),
        "pelvis": (20, ["transverse", "longitudinal"], [("cyst", 100, ["adnexa*"])]),
        "heart": (15, ["apical four-chamber", "parasternal long-axis"], [("pericardial effusion", 100, [])]),
    },
    "Angiography": {
        "head": (35, ["AP", "lateral"], [("aneurysm", 60, []), ("stenosis", 40, [])]),
        "heart": (35, ["LAO", "RAO"], [("stenosis", 80, []), ("aneurysm", 20, [])]),
        "abdomen": (15, ["AP"], [("stenosis", 60, []), ("aneurysm", 40, [])]),
        "pelvis": (15, ["AP"], [("stenosis", 70, []), ("aneurysm", 30, [])]),
    },
    "PET": {
        "chest": (40, ["axial", "coronal"], [("mass", 50, ["lung*"]), ("lymphadenopathy", 50, ["hilum*"])]),
        "abdomen": (25, ["axial", "coronal"], [("mass", 50, ["liver"]), ("lymphadenopathy", 50, ["paraaortic"])]),
        "head": (15, ["axial", "coronal"], [("mass", 100, ["brain"])]),
        "pelvis": (20, ["axial", "coronal"], [("lymphadenopathy", 100, ["iliacnode*"])]),
    },
}
FINDING_RATE = 0.8            # share of images with a finding
ARROW_RATE = 0.6              # share of findings marked by an arrow
ARROW_COLOURS = {"PET": ["blue", "green"], "Angiography": ["red", "yellow", "blue", "green"]}
ALL_ARROWS = ["white", "red", "yellow", "blue", "green"]
SIZE_MM = {"nodule": (6, 28), "mass": (25, 80), "cyst": (8, 50), "hemorrhage": (15, 50),
           "lymphadenopathy": (12, 35), "aneurysm": (5, 22)}
EMPTY_CONCEPT_RATE = 0.005    # real ROCOv2 has a few images without any CUI

CUI_NAMES = {
    "C0040405": "X-Ray Computed Tomography", "C0024485": "Magnetic Resonance Imaging", "C1306645": "Plain x-ray",
    "C0041618": "Ultrasonography", "C0002978": "angiogram", "C0032743": "Positron-Emission Tomography",
    "C0817096": "Chest", "C0000726": "Abdomen", "C0018670": "Head", "C0006104": "Brain", "C0030797": "Pelvis",
    "C0022742": "Knee", "C0037949": "Vertebral column", "C0027530": "Neck", "C0018787": "Heart",
    "C0023216": "Lower Extremity", "C0024109": "Lung", "C0023884": "Liver", "C0022646": "Kidney",
    "C0005682": "Urinary Bladder", "C0028259": "Nodule", "C0577559": "Mass of body structure", "C0010709": "Cyst",
    "C0016658": "Fracture", "C0032227": "Pleural effusion disorder", "C0019080": "Hemorrhage",
    "C0497156": "Lymphadenopathy", "C1261287": "Stenosis", "C0002940": "Aneurysm", "C0031039": "Pericardial effusion",
}
REGION_CUIS = {"chest": ["C0817096"], "abdomen": ["C0000726"], "head": ["C0018670"], "pelvis": ["C0030797"],
               "knee": ["C0022742"], "spine": ["C0037949"], "neck": ["C0027530"], "heart": ["C0018787"]}
HOST_CUI = {"lung": "C0024109", "liver": "C0023884", "kidney": "C0022646", "brain": "C0006104", "bladder": "C0005682"}
FINDING_CUI = {"nodule": "C0028259", "mass": "C0577559", "cyst": "C0010709", "fracture": "C0016658",
               "pleural effusion": "C0032227", "hemorrhage": "C0019080", "lymphadenopathy": "C0497156",
               "stenosis": "C1261287", "aneurysm": "C0002940", "pericardial effusion": "C0031039"}
# ImageCLEF "manual" concepts: modality CUIs plus these X-ray body regions (reference.md).
MANUAL_XRAY_REGION = {"chest": "C0817096", "abdomen": "C0000726", "pelvis": "C0030797", "spine": "C0037949",
                      "knee": "C0023216"}
TRUTH_COLUMNS = ["ID", "modality", "modality_cui", "region", "view", "finding", "side", "size_mm", "arrow_colour",
                 "bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1", "location"]


def _wchoice(rng, table):
    keys = list(table)
    w = np.array([table[k] if not isinstance(table[k], tuple) else table[k][0] for k in keys], float)
    return keys[int(rng.choice(len(keys), p=w / w.sum()))]


def sample_attributes(rng):
    """Random content of one image: modality, region, view, finding, arrow colour, target size."""
    mod = _wchoice(rng, MODALITY_WEIGHT)
    region = _wchoice(rng, CATALOG[mod])
    _, views, findings = CATALOG[mod][region]
    a = {"modality": mod, "region": region, "view": views[int(rng.integers(len(views)))],
         "finding": "", "hosts": [], "arrow_colour": "", "size_mm": 0,
         "knee_side": ["right", "left"][int(rng.integers(2))] if region == "knee" else None,
         "angio_side": ["right", "left"][int(rng.integers(2))]}
    if rng.random() < FINDING_RATE:
        f, _, hosts = findings[int(rng.choice(len(findings), p=np.array([x[1] for x in findings]) / sum(x[1] for x in findings)))]
        a["finding"], a["hosts"] = f, hosts
        lo, hi = SIZE_MM.get(f, (0, 0))
        a["size_mm"] = int(rng.integers(lo, hi + 1)) if hi else 0
        if rng.random() < ARROW_RATE:
            colours = ARROW_COLOURS.get(mod, ALL_ARROWS)
            a["arrow_colour"] = colours[int(rng.integers(len(colours)))]
    return a


def concepts_for(a, info):
    """(concepts, manual concepts) CUI lists for one image, modality first as in ROCOv2."""
    cuis = [MODALITY_CUI[a["modality"]]] + REGION_CUIS[a["region"]]
    if a["modality"] == "MRI" and a["region"] == "head":
        cuis.append(HOST_CUI["brain"])
    manual = [MODALITY_CUI[a["modality"]]]
    if a["modality"] == "X-ray":
        manual.append(MANUAL_XRAY_REGION[a["region"]])
        if a["region"] == "knee":
            cuis.append(MANUAL_XRAY_REGION["knee"])
    if a["finding"]:
        host = HOST_CUI.get(info.get("host", ""))
        if host:
            cuis.append(host)
        cuis.append(FINDING_CUI[a["finding"]])
    return list(dict.fromkeys(cuis)), manual


def _ids(seed, split_idx, n):
    """ROCOv2-style IDs with deterministic gaps (real ROCOv2 numbering is not contiguous)."""
    rng = np.random.default_rng([seed, split_idx, 7919])
    nums, k = [], 0
    for _ in range(n):
        k += 1 + int(rng.random() < 0.04) + int(rng.random() < 0.01)
        nums.append(k)
    return nums


def _write_csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def _fmt(v):
    return f"{v:.4f}"


def _render_one(job):
    """Everything about one image; a pure function of (seed, split, number) so workers agree."""
    seed, si, split, num, image_size = job
    iid = f"ROCOv2_2023_{split}_{num:06d}"
    rng = np.random.default_rng([seed, si, num])
    a = sample_attributes(rng)
    im, info = draw_image(a, rng, image_size)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=92, subsampling=0)   # 4:4:4 keeps arrow colours crisp
    text_rng = np.random.default_rng([seed, si, num, 1])
    caption = make_caption(a, info, text_rng)
    cuis, man = concepts_for(a, info)
    if text_rng.random() < EMPTY_CONCEPT_RATE:
        cuis, man = [], []
    box = info.get("bbox")
    truth = [iid, a["modality"], MODALITY_CUI[a["modality"]], a["region"], a["view"], a["finding"],
             info.get("side", ""), info.get("size_mm", "") or "", a["arrow_colour"],
             *([_fmt(v) for v in box] if box else ["", "", "", ""]), info.get("location", "")]
    return iid, buf.getvalue(), caption, cuis, man, truth


def _workers(total):
    """Two or more processes pay off above a few hundred images (spawn costs about a second each)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return min(cores, 4) if total >= 400 else 1


def synthesize(out_dir, seed=0, n_train=1200, n_valid=200, n_test=200, image_size=256, zip_images=False,
               workers=None):
    """Write the demo dataset to ``out_dir`` (ROCOv2 layout + ``{split}_demo_truth.csv``); returns a summary.

    Output bytes depend only on the arguments, not on ``workers`` (None = choose from the CPU count).
    Used by notebook 00_data_setup and ``python -m medcap_utils.data synth``."""
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    counts = dict(zip(SPLITS, (n_train, n_valid, n_test)))
    workers = _workers(sum(counts.values())) if workers is None else workers
    summary = {"out_dir": str(out), "seed": seed, "image_size": image_size, "splits": counts, "modalities": {}}
    used_cuis, licence_rows = set(), []
    pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) if workers > 1 else None
    try:
        for si, (split, n) in enumerate(counts.items()):
            img_dir = out / split
            img_dir.mkdir(exist_ok=True)
            jobs = [(seed, si, split, num, image_size) for num in _ids(seed, si, n)]
            results = pool.map(_render_one, jobs, chunksize=16) if pool else map(_render_one, jobs)
            caps, conc, manual, truth = [], [], [], []
            zf = zipfile.ZipFile(out / f"{split}_images.zip", "w", zipfile.ZIP_STORED) if zip_images else None
            for iid, data, caption, cuis, man, row in results:
                (img_dir / f"{iid}.jpg").write_bytes(data)
                if zf is not None:
                    zf.writestr(zipfile.ZipInfo(f"{split}/{iid}.jpg", date_time=(2023, 1, 1, 0, 0, 0)), data)
                caps.append([iid, caption])
                conc.append([iid, ";".join(cuis)])
                manual.append([iid, ";".join(man)])
                truth.append(row)
                used_cuis.update(cuis, man)
                licence_rows.append([iid, f"Synthetic image drawn by medcap_utils.data.synth (seed {seed}); "
                                          "no patient data", "CC0 1.0"])
                summary["modalities"][row[1]] = summary["modalities"].get(row[1], 0) + 1
            if zf is not None:
                zf.close()
            _write_csv(out / f"{split}_captions.csv", ["ID", "Caption"], caps)
            _write_csv(out / f"{split}_concepts.csv", ["ID", "CUIs"], conc)
            _write_csv(out / f"{split}_concepts_manual.csv", ["ID", "CUIs"], manual)
            _write_csv(out / f"{split}_demo_truth.csv", TRUTH_COLUMNS, truth)
    finally:
        if pool is not None:
            pool.shutdown()
    _write_csv(out / "cui_mapping.csv", ["CUI", "Canonical name"], [[c, CUI_NAMES[c]] for c in sorted(used_cuis)])
    _write_csv(out / "license_information.csv", ["ID", "Attribution", "License"], licence_rows)
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    return summary
