"""Readers for ROCOv2 as distributed (Zenodo record 8333645) and as the Hugging Face dataset.

Both readers return the same representation, a ``datasets.Dataset`` with columns
``id, image, caption, cuis, cuis_manual, modality``. Used by notebooks 00 and 01 and by every
training notebook through :mod:`medcap_utils.data.cache`.

CSV text is kept byte-for-byte as in the file: leading/trailing spaces, unicode punctuation and
run-together sentences are part of the ground truth the official evaluators score against.
"""
from __future__ import annotations

import csv
import threading
import zipfile
from pathlib import Path

import pandas as pd

SPLITS = ("train", "valid", "test")

#: Modality CUIs of ROCOv2 (reference.md); C1699633 (PET/CT) counts as PET, C0920367 (OCT) is 2025.
MODALITY_CUIS: dict[str, str] = {
    "C0040405": "CT",
    "C0024485": "MRI",
    "C1306645": "X-ray",
    "C0041618": "Ultrasound",
    "C0002978": "Angiography",
    "C0032743": "PET",
    "C1699633": "PET",
    "C0920367": "OCT",
}


#: The 15 CUIs of the ImageCLEF 2025 secondary (manual) concept evaluation: modalities + X-ray regions.
MANUAL_CUIS: frozenset[str] = frozenset(
    """C0002978 C0040405 C0024485 C0032743 C0041618 C1306645 C1140618 C0037949
    C0030797 C0023216 C0037303 C0817096 C0006141 C0000726 C0920367""".split()
)


class MalformedCSVError(ValueError):
    """A CSV row that does not have the expected number of fields; names file and line."""


def _csv_rows(path: Path, expected_header: tuple[str, ...]):
    """Yield ``(line_number, fields)`` for every data row; raises on a malformed header or row."""
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != expected_header:
            raise MalformedCSVError(f"{path}: line 1: expected header {','.join(expected_header)}, got {header}")
        for fields in reader:
            yield reader.line_num, fields


def iter_csv(path: str | Path, expected_header: tuple[str, ...]):
    """``(line, fields, problem)`` per data row; ``problem`` is None or a message (used by ``check``)."""
    path = Path(path)
    for line, fields in _csv_rows(path, expected_header):
        if len(fields) != len(expected_header):
            yield line, fields, f"{len(fields)} fields, expected {len(expected_header)}"
        else:
            yield line, fields, None


def _read_two_columns(path: str | Path, header: tuple[str, str]) -> list[tuple[str, str]]:
    rows = []
    for line, fields, problem in iter_csv(path, header):
        if problem:
            raise MalformedCSVError(f"{path}: line {line}: {problem}: {fields!r}")
        rows.append((fields[0], fields[1]))
    return rows


def read_captions(path: str | Path) -> pd.DataFrame:
    """``{split}_captions.csv`` as a DataFrame ``ID, Caption`` with the caption text exactly as stored."""
    rows = _read_two_columns(path, ("ID", "Caption"))
    return pd.DataFrame(rows, columns=["ID", "Caption"]).astype({"ID": str, "Caption": str})


def parse_cuis(field: str) -> list[str]:
    """``"C1;C2"`` -> ``["C1", "C2"]``; an empty field is an empty list (images without concepts)."""
    return [c.strip() for c in field.split(";") if c.strip()]


def read_concepts(path: str | Path) -> pd.DataFrame:
    """``{split}_concepts.csv`` / ``_concepts_manual.csv`` as ``ID, CUIs`` (``CUIs`` a list of strings)."""
    rows = _read_two_columns(path, ("ID", "CUIs"))
    return pd.DataFrame({"ID": [r[0] for r in rows], "CUIs": [parse_cuis(r[1]) for r in rows]})


def read_cui_mapping(path: str | Path) -> dict[str, str]:
    """``cui_mapping.csv`` as ``{CUI: canonical name}``."""
    return dict(_read_two_columns(path, ("CUI", "Canonical name")))


def modality_of(cuis: list[str]) -> str | None:
    """The modality named by the first modality CUI in ``cuis`` (ROCOv2 lists it first), else None."""
    for cui in cuis:
        name = MODALITY_CUIS.get(cui.upper())
        if name:
            return name
    return None


def split_files(root: str | Path, split: str) -> dict[str, Path]:
    """The paths ROCOv2 uses for one split (they may not all exist)."""
    root = Path(root)
    return {
        "captions": root / f"{split}_captions.csv",
        "concepts": root / f"{split}_concepts.csv",
        "concepts_manual": root / f"{split}_concepts_manual.csv",
        "images_dir": root / split,
        "images_zip": root / f"{split}_images.zip",
        "cui_mapping": root / "cui_mapping.csv",
    }


def image_source(root: str | Path, split: str, image_id: str) -> str:
    """Where an image lives: ``{root}/{split}/{id}.jpg`` or ``zip://{split}_images.zip::{member}``."""
    files = split_files(root, split)
    path = files["images_dir"] / f"{image_id}.jpg"
    if path.exists() or not files["images_zip"].exists():
        return str(path)
    return f"zip://{files['images_zip']}::{split}/{image_id}.jpg"


_open_zips = threading.local()  # one ZipFile per thread and archive: re-reading the index per image is O(N^2)


def _zip(archive: str) -> zipfile.ZipFile:
    table = _open_zips.__dict__.setdefault("archives", {})
    if archive not in table:
        table[archive] = zipfile.ZipFile(archive)
    return table[archive]


def read_image_bytes(source: str) -> bytes:
    """Raw bytes of an image given by :func:`image_source` (a file or a member of a split zip)."""
    if source.startswith("zip://"):
        archive, member = source[len("zip://"):].split("::", 1)
        zf = _zip(archive)
        try:
            return zf.read(member)
        except KeyError:  # some distributions store members without the split folder
            return zf.read(member.split("/", 1)[-1])
    return Path(source).read_bytes()


def declared_missing(root: str | Path) -> dict[str, str]:
    """Files a subset's source did not have (``subset.json`` ``missing``: name -> reason); empty otherwise."""
    import json

    manifest = Path(root) / "subset.json"
    return dict(json.loads(manifest.read_text()).get("missing", {})) if manifest.exists() else {}


def split_frame(root: str | Path, split: str) -> pd.DataFrame:
    """One split without decoding images: ``id, caption, cuis, cuis_manual, modality, image_path``.

    Used by notebook 01 (statistics) and by the image cache. IDs missing from a concept file get an
    empty list; use ``python -m medcap_utils.data check`` to find such inconsistencies.

    A subset of the Hugging Face copy of ROCOv2 has only the manual concepts (its ``cui`` column is
    ``concepts_manual.csv``; ``subset.json`` declares ``concepts.csv`` missing). Then ``cuis`` holds the
    manual concepts, and ``frame.attrs["concepts_source"]`` says so, so concept detection (notebook 05) and
    the LSTM's multi-label encoder (07) train on what the source has, labelled, instead of on nothing.
    The modality comes from ``cuis``, else from ``cuis_manual`` (which holds the modality CUI).
    """
    files = split_files(root, split)
    frame = read_captions(files["captions"]).rename(columns={"ID": "id", "Caption": "caption"})
    for key, column in (("concepts", "cuis"), ("concepts_manual", "cuis_manual")):
        if files[key].exists():
            table = dict(zip(*read_concepts(files[key]).T.values))
            frame[column] = [list(table.get(i, [])) for i in frame["id"]]
        else:
            frame[column] = [[] for _ in range(len(frame))]
    frame.attrs["concepts_source"] = files["concepts"].name
    if not files["concepts"].exists() and files["concepts_manual"].exists() \
            and files["concepts"].name in declared_missing(root):
        frame["cuis"] = [list(c) for c in frame["cuis_manual"]]
        frame.attrs["concepts_source"] = (f"{files['concepts_manual'].name} (this source has no "
                                          f"{files['concepts'].name}: {declared_missing(root)[files['concepts'].name]})")
    # object dtype keeps None for "no modality CUI" (pandas' string dtype would turn it into NaN)
    frame["modality"] = pd.Series([modality_of(c) or modality_of(m) for c, m in zip(frame["cuis"], frame["cuis_manual"])],
                                  index=frame.index, dtype=object)
    frame["image_path"] = [image_source(root, split, i) for i in frame["id"]]
    return frame


def _dataset_features():
    import datasets

    return datasets.Features(
        {
            "id": datasets.Value("string"),
            "image": datasets.Image(),
            "caption": datasets.Value("string"),
            "cuis": datasets.List(datasets.Value("string")),
            "cuis_manual": datasets.List(datasets.Value("string")),
            "modality": datasets.Value("string"),
        }
    )


def load_split(root: str | Path, split: str):
    """One split of the official layout as a ``datasets.Dataset`` (images decoded lazily to RGB by
    :func:`medcap_utils.data.images.open_rgb`). Used by notebook 00."""
    import datasets

    frame = split_frame(root, split)
    records = {
        "id": frame["id"].tolist(),
        "image": [{"path": None, "bytes": read_image_bytes(p)} for p in frame["image_path"]],
        "caption": frame["caption"].tolist(),
        "cuis": frame["cuis"].tolist(),
        "cuis_manual": frame["cuis_manual"].tolist(),
        "modality": frame["modality"].tolist(),
    }
    return datasets.Dataset.from_dict(records, features=_dataset_features())


def load_hf_rocov2(name_or_path: str = "eltorio/ROCOv2-radiology", split: str = "test"):
    """The Hugging Face copy of ROCOv2 (fields ``image, image_id, caption, cui``) in our representation.

    Needs the dataset in the local cache or a hub connection; the manual concept subset is not in the
    HF copy, so ``cuis_manual`` is derived from the allowed manual CUIs of the ImageCLEF evaluator.
    """
    import datasets

    hf_split = {"valid": "validation"}.get(split, split)
    raw = datasets.load_dataset(name_or_path, split=hf_split)

    def convert(example):
        cuis = list(example["cui"] or [])
        return {
            "id": example["image_id"],
            "caption": example["caption"],
            "cuis": cuis,
            "cuis_manual": [c for c in cuis if c in MANUAL_CUIS],
            "modality": modality_of(cuis),
        }

    converted = raw.map(convert, remove_columns=[c for c in raw.column_names if c != "image"])
    return converted.cast(_dataset_features())
