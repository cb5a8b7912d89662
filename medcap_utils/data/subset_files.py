"""Writing a ROCOv2 subset folder (:mod:`medcap_utils.data.subset`; notebook 00_data_setup in the rocov2-subset
profile): CSVs byte-identical to the distributed ones, image bytes as the source stored them, the sha256 of every file,
the rename into place and the folder's ``SUBSET_README.md``.
"""
from __future__ import annotations

import csv
import os
import shutil
import uuid
from pathlib import Path

from medcap_utils.data.rocov2 import iter_csv
from medcap_utils.model_files import file_sha256

MANIFEST = "subset.json"
README = "SUBSET_README.md"


class SubsetError(RuntimeError):
    """A subset that cannot be written; the message names the split, the source and the fix."""


def raw_rows(path: Path, header: tuple[str, str]) -> dict[str, str]:
    rows = {}
    for line, fields, problem in iter_csv(path, header):
        if problem:
            raise SubsetError(f"{path}: line {line}: {problem}; run `python -m medcap_utils.data check` on the source")
        rows[fields[0]] = fields[1]
    return rows


def copy_licence_rows(root: Path, tmp: Path, ids_by_split: dict, missing: dict) -> None:
    path = root / "license_information.csv"
    if not path.exists():
        missing[path.name] = "not in the source folder"
        return
    wanted = {i for ids in ids_by_split.values() for i in ids}
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        rows = [r for r in reader if r and r[0] in wanted]
    write_csv(tmp / path.name, header, rows)


def write_csv(path: Path, header, rows) -> None:
    # Minimal quoting and "\n" line ends: byte-identical to the distributed ROCOv2 CSVs
    # (tests/test_subset.py round-trips the real sample rows).
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def image_bytes(image, image_id: str) -> bytes:
    if isinstance(image, dict) and image.get("bytes"):
        return image["bytes"]
    if isinstance(image, dict) and image.get("path") and Path(image["path"]).is_file():
        return Path(image["path"]).read_bytes()
    raise SubsetError(f"image {image_id}: no bytes in the source row")


def image_format(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return "png"
    if data.startswith(b"\xff\xd8"):
        return "jpeg"
    return "other"


def is_data_file(rel: str) -> bool:
    """Files ``check`` reads: CSVs and images; other files a user adds beside them are not flagged."""
    return rel.endswith(".csv") or rel.endswith(".jpg") or rel.endswith(".zip") or rel == README


def hash_files(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): file_sha256(p)
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != MANIFEST}


def move_into_place(tmp: Path, out: Path) -> None:
    """Rename the finished folder to ``out``; an old ``out`` is set aside first and removed after."""
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def readme_text(manifest: dict) -> str:
    source = manifest["source"]
    lines = [
        "# ROCOv2 subset", "",
        f"Written by `medcap_utils.data.subset` from `{source['id']}` ({source['kind']}), seed {manifest['seed']}.",
        f"Selection: {source['selection']}.", "",
        "| split | images |", "|---|---|",
        *[f"| {split} | {len(ids)} |" for split, ids in manifest["ids"].items()], "",
        "## Missing files", "",
    ]
    lines += [f"- `{name}`: {reason}" for name, reason in sorted(manifest["missing"].items())] or ["none"]
    lines += ["", "## Notes", "", *[f"- {note}" for note in manifest["notes"]], "",
              "`subset.json` lists every file with its sha256; `python -m medcap_utils.data check DIR` verifies them.",
              "Licence: the Hugging Face card of ROCOv2 states CC BY-NC-SA 4.0; each image keeps the licence "
              "of its PMC article (CC BY or CC BY-NC), named per image in Zenodo's license_information.csv.", ""]
    return "\n".join(lines)
