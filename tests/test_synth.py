"""Tests of the synthetic demo dataset (medcap_utils.data.synth)."""
import csv
import re
import zipfile

import numpy as np
import pytest
from PIL import Image

from medcap_utils.data.synth import CUI_NAMES, MODALITY_CUI, SPLITS, TRUTH_COLUMNS, synthesize
from medcap_utils.data.synth_draw import ARROW_RGB

N = {"n_train": 60, "n_valid": 12, "n_test": 12}
MOD_WORDS = {"CT": r"\bCT\b|computed tomography", "MRI": r"\bMRI?\b|magnetic resonance",
             "X-ray": r"x[-‐]ray|radiograph", "Ultrasound": r"ultraso|\bUS\b|sonograph",
             "Angiography": r"angiogra|\bDSA\b", "PET": r"\bPET\b"}
FINDING_WORDS = {"nodule": "nodule", "mass": "mass", "cyst": "cyst", "fracture": "fracture",
                 "pleural effusion": "pleural effusion", "hemorrhage": "hemorrhage|haemorrhage",
                 "lymphadenopathy": "lymph", "stenosis": "stenosis", "aneurysm": "aneurysm",
                 "pericardial effusion": "pericardial effusion"}
MANUAL_ALLOWED = {"C0002978", "C0040405", "C0024485", "C0032743", "C0041618", "C1306645", "C1140618", "C0037949",
                  "C0030797", "C0023216", "C0037303", "C0817096", "C0006141", "C0000726", "C0920367"}


def _rows(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def _truth(root, split):
    with open(root / f"{split}_demo_truth.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth_a")
    summary = synthesize(root, seed=0, zip_images=True, **N)
    return root, summary


def test_layout_and_headers(small):
    root, summary = small
    assert summary["splits"] == {"train": 60, "valid": 12, "test": 12}
    assert _rows(root / "cui_mapping.csv")[0] == ["CUI", "Canonical name"]
    assert _rows(root / "license_information.csv")[0][0] == "ID"
    for split in SPLITS:
        assert _rows(root / f"{split}_captions.csv")[0] == ["ID", "Caption"]
        assert _rows(root / f"{split}_concepts.csv")[0] == ["ID", "CUIs"]
        assert _rows(root / f"{split}_concepts_manual.csv")[0] == ["ID", "CUIs"]
        assert _rows(root / f"{split}_demo_truth.csv")[0] == TRUTH_COLUMNS
        with zipfile.ZipFile(root / f"{split}_images.zip") as zf:
            names = sorted(zf.namelist())
        assert names == sorted(f"{split}/{r[0]}.jpg" for r in _rows(root / f"{split}_captions.csv")[1:])


def test_ids_unique_noncontiguous_and_consistent(small):
    root, _ = small
    all_ids = []
    for split in SPLITS:
        ids = [r[0] for r in _rows(root / f"{split}_captions.csv")[1:]]
        assert all(re.fullmatch(rf"ROCOv2_2023_{split}_\d{{6}}", i) for i in ids)
        for name in ("concepts", "concepts_manual", "demo_truth"):
            assert [r[0] for r in _rows(root / f"{split}_{name}.csv")[1:]] == ids
        assert sorted(p.stem for p in (root / split).glob("*.jpg")) == sorted(ids)
        all_ids += ids
    assert len(all_ids) == len(set(all_ids))
    nums = [int(i[-6:]) for i in [r[0] for r in _rows(root / "train_captions.csv")[1:]]]
    assert nums != list(range(1, len(nums) + 1)), "real ROCOv2 IDs have gaps; so must the demo"
    assert nums == sorted(nums)


def test_same_seed_same_bytes_other_seed_differs(small, tmp_path):
    root, _ = small
    again = tmp_path / "again"
    synthesize(again, seed=0, zip_images=True, workers=2, **N)   # parallel drawing gives the same bytes
    for split in SPLITS:
        for name in ("captions", "concepts", "concepts_manual", "demo_truth"):
            assert (root / f"{split}_{name}.csv").read_bytes() == (again / f"{split}_{name}.csv").read_bytes()
        for p in (root / split).glob("*.jpg"):
            assert p.read_bytes() == (again / split / p.name).read_bytes()
        assert (root / f"{split}_images.zip").read_bytes() == (again / f"{split}_images.zip").read_bytes()
    other = tmp_path / "other"
    synthesize(other, seed=1, n_train=12, n_valid=0, n_test=0)
    a = (root / "train_captions.csv").read_text().splitlines()[1:13]
    b = (other / "train_captions.csv").read_text().splitlines()[1:13]
    assert a != b


def test_captions_name_what_the_truth_says(small):
    root, _ = small
    lengths = []
    for split in SPLITS:
        caps = dict(r for r in _rows(root / f"{split}_captions.csv")[1:])
        for t in _truth(root, split):
            cap = caps[t["ID"]]
            assert cap.strip(), t["ID"]
            lengths.append(len(cap.split()))
            assert re.search(MOD_WORDS[t["modality"]], cap, re.I), (t["modality"], cap)
            low = cap.lower()
            if t["finding"]:
                assert re.search(FINDING_WORDS[t["finding"]], low), (t["finding"], cap)
            else:
                assert not any(re.search(w, low) for w in FINDING_WORDS.values()), cap
            if t["arrow_colour"]:
                assert f"{t['arrow_colour']} arrow" in low, cap
            else:
                assert "arrow" not in low, cap
            if t["side"]:
                assert t["side"] in low, cap
            if t["size_mm"]:
                mm = int(t["size_mm"])
                assert re.search(rf"\b{mm}\s?-?mm|\b{mm / 10:.1f} cm", cap), (mm, cap)
    assert 10 <= np.median(lengths) <= 25
    assert max(lengths) < 120


def test_truth_and_concepts_are_consistent(small):
    root, _ = small
    mapping = dict(r for r in _rows(root / "cui_mapping.csv")[1:])
    assert set(mapping) <= set(CUI_NAMES)
    for split in SPLITS:
        conc = {r[0]: r[1] for r in _rows(root / f"{split}_concepts.csv")[1:]}
        man = {r[0]: r[1] for r in _rows(root / f"{split}_concepts_manual.csv")[1:]}
        for t in _truth(root, split):
            assert t["modality_cui"] == MODALITY_CUI[t["modality"]]
            cuis = conc[t["ID"]].split(";") if conc[t["ID"]] else []
            mcuis = man[t["ID"]].split(";") if man[t["ID"]] else []
            assert set(cuis) <= set(mapping) and set(mcuis) <= MANUAL_ALLOWED
            if cuis:
                assert cuis[0] == t["modality_cui"] and len(cuis) == len(set(cuis))
                assert set(mcuis) <= set(cuis)
            box = [t[f"bbox_{k}"] for k in ("x0", "y0", "x1", "y1")]
            if t["finding"]:
                x0, y0, x1, y1 = map(float, box)
                assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1
            else:
                assert box == ["", "", "", ""] and not t["arrow_colour"]


def _features(path):
    im = Image.open(path).convert("RGB")
    small = np.asarray(im.resize((16, 16), Image.BILINEAR), dtype=np.float32) / 255
    grey = small.mean(axis=2)
    arr = np.asarray(im, dtype=np.float32) / 255
    sat = (arr.max(axis=2) - arr.min(axis=2)).mean()
    hist = np.histogram(arr.mean(axis=2), bins=16, range=(0, 1))[0] / arr[..., 0].size
    return np.concatenate([grey.ravel(), small.reshape(-1, 3).mean(0), [sat * 4], hist * 8])


def test_modality_is_learnable_from_pixels(tmp_path):
    """A nearest-centroid classifier on tiny pixel features recovers the modality of held-out images."""
    synthesize(tmp_path, seed=3, n_train=150, n_valid=0, n_test=60)
    data = {}
    for split in ("train", "test"):
        rows = _truth(tmp_path, split)
        data[split] = (np.stack([_features(tmp_path / split / f"{r['ID']}.jpg") for r in rows]),
                       np.array([r["modality"] for r in rows]))
    (xtr, ytr), (xte, yte) = data["train"], data["test"]
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-3
    xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    classes = sorted(set(ytr))
    cent = np.stack([xtr[ytr == c].mean(0) for c in classes])
    pred = np.array(classes)[np.argmin(((xte[:, None, :] - cent[None]) ** 2).sum(-1), axis=1)]
    assert (pred == yte).mean() > 0.8


def _colour_pixels(arr, colour):
    ref = np.array(ARROW_RGB[colour], np.float32)
    return (np.abs(arr - ref).max(axis=2) < 60).sum()


def test_arrow_colour_is_in_the_pixels_near_the_finding(small):
    root, _ = small
    checked = 0
    for split in SPLITS:
        for t in _truth(root, split):
            arr = np.asarray(Image.open(root / split / f"{t['ID']}.jpg").convert("RGB"), dtype=np.float32)
            S = arr.shape[0]
            colour = t["arrow_colour"]
            if colour in ("red", "yellow", "blue", "green"):
                x0, y0, x1, y1 = (float(t[f"bbox_{k}"]) for k in ("x0", "y0", "x1", "y1"))
                m = .2   # the arrow is at most ~0.16 of the image long and starts next to the finding
                crop = arr[int(max(y0 - m, 0) * S):int(min(y1 + m, 1) * S) + 1,
                           int(max(x0 - m, 0) * S):int(min(x1 + m, 1) * S) + 1]
                assert _colour_pixels(crop, colour) >= 15, (t["ID"], colour)
                others = [c for c in ("red", "blue", "green")
                          if c != colour and not (colour == "yellow" and c == "red")]
                if t["modality"] not in ("PET",):
                    assert all(_colour_pixels(arr, c) < 5 for c in others), t["ID"]
                checked += 1
            elif not colour and t["modality"] != "PET":
                sat = arr.max(axis=2) - arr.min(axis=2)
                assert (sat > 80).sum() < 5, t["ID"]   # grey modalities carry no colour without an arrow
    assert checked >= 10
