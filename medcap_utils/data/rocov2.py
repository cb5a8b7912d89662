"""Readers for ROCOv2 as distributed (Zenodo record 8333645) and as the Hugging Face dataset.

Both readers return the same representation, a ``datasets.Dataset`` with columns
``id, image, caption, cuis, cuis_manual, modality``. Used by notebooks 00 and 01 and by every
training notebook through :mod:`medcap_utils.data.cache`.

CSV text is kept byte-for-byte as in the file: leading/trailing spaces, unicode punctuation and
run-together sentences are part of the ground truth the official evaluators score against.
"""
from __future__ import annotations

import csv
import io
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .files import file_type, read_image_bytes

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
    """A CSV the readers refuse. Names the file, the (1-based) line and the problem ``kind`` (one of
    :data:`CSV_KINDS`, the same kinds ``python -m medcap_utils.data check`` reports) and says how to fix it."""

    def __init__(self, path, line: int, kind: str, detail: str, more: int = 0):
        self.path, self.line, self.kind, self.detail = Path(path), line, kind, detail
        where = f"{path}: line {line}" if line else str(path)
        extra = f" (and {more} more problem(s) in this file)" if more else ""
        super().__init__(f"{where}: {detail}{extra}; fix the file "
                         "(`python -m medcap_utils.data check DIR` lists every problem)")


#: What the CSV scan reports; ``check`` reports the same kinds and the readers refuse every one.
CSV_KINDS = ("not_a_file", "encoding", "malformed_row", "duplicate_id", "empty_caption", "id_mismatch")


@dataclass(frozen=True)
class RowProblem:
    kind: str  # one of CSV_KINDS
    line: int  # 1-based line where the row starts
    detail: str


def _shape(text: str) -> str:
    """``ROCOv2_2023_test_000001`` -> ``a9_9_a_9``: how an ID looks, to spot a row swallowed into a field."""
    return re.sub(r"[A-Za-z]+", "a", re.sub(r"[0-9]+", "9", text))


def _read_text(path: Path) -> str:
    """The file as text. Bytes that are not UTF-8 are kept as surrogates so the scan can name their line
    (and keep reading); a UTF-8 byte-order mark (Excel's "CSV UTF-8") is not part of the header."""
    info = os.stat(path)  # FileNotFoundError names the path already
    if not stat.S_ISREG(info.st_mode):  # a FIFO would block a plain open() for ever
        raise MalformedCSVError(path, 0, "not_a_file", f"not a regular file ({file_type(info.st_mode)})")
    return path.read_bytes().decode("utf-8", errors="surrogateescape").removeprefix("\ufeff")


_NOT_UTF8 = re.compile("[\udc80-\udcff]")


def scan_csv(path: str | Path, header: tuple[str, ...], require_value: bool = False):
    """``(rows, problems)`` of a two-column ROCOv2 CSV: the one reading path of ``check`` and every reader.

    ``rows``: ``[(line, fields)]`` of the rows a reader may use (first occurrence of each ID, empty values
    included so ``check`` can count them); ``problems``: :class:`RowProblem` for every row that is not UTF-8,
    malformed (field count, broken quoting, a quoted field that swallowed following rows, a field over the
    csv module's 131,072-character limit), a repeated ID, or (``require_value``) an empty value.
    A wrong header or a file that is not a regular file raises :class:`MalformedCSVError`.
    """
    path = Path(path)
    reader = csv.reader(io.StringIO(_read_text(path), newline=""), strict=True)  # strict: broken quotes raise
    try:
        first = next(reader, None)
    except csv.Error as error:
        first = [f"<unreadable: {error}>"]
    if first is None or tuple(h.strip() for h in first) != header:
        raise MalformedCSVError(path, 1, "malformed_row", f"expected header {','.join(header)}, got {first}")
    rows, problems, seen = [], [], {}
    while True:
        start = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as error:  # the reader resumes at the next physical line
            problems.append(RowProblem("malformed_row", start, _quote_error(error, start, reader.line_num)))
            if reader.line_num < start:  # nothing consumed: stop rather than loop
                break
            continue
        problem = _row_problem(fields, header, start, seen, require_value)
        if problem:
            problems.append(problem)
        if problem is None or problem.kind == "empty_caption":
            seen[fields[0]] = start
            rows.append((start, fields))
    return rows, problems


def _quote_error(error: csv.Error, start: int, end: int) -> str:
    text = str(error)
    lines = f"line {start}" if end <= start else f"lines {start}-{end}"
    if "field larger than field limit" in text:
        return (f"a field over {csv.field_size_limit():,} characters on {lines} "
                "(usually a quote that is never closed)")
    if "unexpected end of data" in text:
        return f"a quote opened on line {start} is never closed (the field runs to the end of the file)"
    return f"broken quoting on {lines}: {text} (a quote inside a field must be doubled, \"\")"


def _row_problem(fields, header, line, seen, require_value) -> RowProblem | None:
    if _NOT_UTF8.search("".join(fields)):
        bad = _NOT_UTF8.search("".join(fields)).group().encode("utf-8", "surrogateescape")
        return RowProblem("encoding", line, f"byte {bad!r} is not UTF-8; save the file as UTF-8")
    if len(fields) != len(header):
        what = "a blank line" if not fields else f"{len(fields)} fields, expected {len(header)}"
        return RowProblem("malformed_row", line, f"{what}: {fields!r}"[:300])
    key = fields[0]
    if not key.strip():
        return RowProblem("malformed_row", line, f"empty {header[0]}: {fields!r}"[:300])
    for k, text in enumerate(fields[1:], start=1):  # rows swallowed by an unclosed quote
        for offset, inner in enumerate(text.splitlines()[1:], start=1):
            token = inner.split(",", 1)[0]
            if "," in inner and token and _shape(token) == _shape(key):
                return RowProblem("malformed_row", line,
                                  f"the quoted {header[k]} of {key} runs over line {line + offset}, which starts "
                                  f"like a row ({token}); a quote on line {line} is probably never closed")
    if key in seen:
        return RowProblem("duplicate_id", line, f"{key} already on line {seen[key]}")
    if require_value and not fields[1].strip():
        return RowProblem("empty_caption", line, f"{key}: {header[1].lower()} is empty")
    return None


def iter_csv(path: str | Path, expected_header: tuple[str, ...]):
    """``(line, fields, problem)`` in line order; ``problem`` is None or a message (used by ``subset``)."""
    rows, problems = scan_csv(path, expected_header)
    merged = [(line, fields, None) for line, fields in rows]
    merged += [(p.line, [], f"{p.kind}: {p.detail}") for p in problems]
    yield from sorted(merged, key=lambda item: item[0])


def _checked_rows(path: str | Path, header: tuple[str, ...], require_value: bool = False) -> list[list[str]]:
    """Rows of a CSV, or :class:`MalformedCSVError` for the first problem ``check`` would report."""
    rows, problems = scan_csv(path, header, require_value)
    if problems:
        first = min(problems, key=lambda p: p.line)
        raise MalformedCSVError(path, first.line, first.kind, first.detail, more=len(problems) - 1)
    return [fields for _, fields in rows]


def read_captions(path: str | Path) -> pd.DataFrame:
    """``{split}_captions.csv`` as a DataFrame ``ID, Caption`` with the caption text exactly as stored.
    Refuses (:class:`MalformedCSVError`) repeated IDs, malformed rows, bytes that are not UTF-8 and empty
    captions: an empty caption would become a training target or a reference scored against."""
    rows = _checked_rows(path, ("ID", "Caption"), require_value=True)
    return pd.DataFrame(rows, columns=["ID", "Caption"]).astype({"ID": str, "Caption": str})


def parse_cuis(field: str) -> list[str]:
    """``"C1;C2"`` -> ``["C1", "C2"]``; an empty field is an empty list (images without concepts)."""
    return [c.strip() for c in field.split(";") if c.strip()]


def read_concepts(path: str | Path) -> pd.DataFrame:
    """``{split}_concepts.csv`` / ``_concepts_manual.csv`` as ``ID, CUIs`` (``CUIs`` a list of strings)."""
    rows = _checked_rows(path, ("ID", "CUIs"))  # an empty CUI field is allowed: an image without concepts
    return pd.DataFrame({"ID": [r[0] for r in rows], "CUIs": [parse_cuis(r[1]) for r in rows]},
                        columns=["ID", "CUIs"])


def read_cui_mapping(path: str | Path) -> dict[str, str]:
    """``cui_mapping.csv`` as ``{CUI: canonical name}``."""
    return dict(_checked_rows(path, ("CUI", "Canonical name")))


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


def declared_missing(root: str | Path) -> dict[str, str]:
    """Files a subset's source did not have (``subset.json`` ``missing``: name -> reason); empty otherwise."""
    import json

    manifest = Path(root) / "subset.json"
    return dict(json.loads(manifest.read_text()).get("missing", {})) if manifest.exists() else {}


def split_frame(root: str | Path, split: str) -> pd.DataFrame:
    """One split without decoding images: ``id, caption, cuis, cuis_manual, modality, image_path``.

    Used by notebook 01 (statistics), the image cache, training and captioning. An image has an empty
    concept list only where its row says so: an ID missing from a concept file, a repeated ID, a malformed
    row or an empty caption raise :class:`MalformedCSVError` (``python -m medcap_utils.data check`` lists
    them all).

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
            _same_ids(files["captions"], frame["id"], files[key], table)
            frame[column] = [list(table[i]) for i in frame["id"]]
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


def _same_ids(captions: Path, ids, concepts: Path, table: dict) -> None:
    """Refuse (as ``check`` reports) IDs in one file but not the other, instead of empty concept lists."""
    only_captions = [i for i in ids if i not in table]
    only_concepts = sorted(set(table) - set(ids))
    if only_captions or only_concepts:
        parts = [f"{len(only_captions)} ID(s) in {captions.name} but not in {concepts.name}, e.g. {only_captions[:3]}"
                 if only_captions else "",
                 f"{len(only_concepts)} ID(s) in {concepts.name} but not in {captions.name}, e.g. {only_concepts[:3]}"
                 if only_concepts else ""]
        raise MalformedCSVError(concepts, 0, "id_mismatch", "; ".join(p for p in parts if p))


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
