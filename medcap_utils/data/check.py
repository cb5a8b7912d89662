"""Validate a dataset directory in the ROCOv2 layout and name every problem by file, line or ID.

``python -m medcap_utils.data check DIR`` prints the counts per split, one line per problem, and
exits non-zero when anything is wrong. Nothing is dropped silently: the readers elsewhere raise on
what this reports. Used by notebook 00.
"""
from __future__ import annotations

import os
import zipfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from medcap_utils.data.images import ImageDecodeError, open_rgb
from medcap_utils.data.files import ZIP_ERRORS, regular_file_problem, zip_member
from medcap_utils.data.rocov2 import (
    SPLITS, MalformedCSVError, image_source, parse_cuis, read_cui_mapping, scan_csv, split_files,
)
from medcap_utils.progress import tqdm

#: Problem kinds, in the order they are reported. Each makes ``check`` fail, and the readers of
#: :mod:`medcap_utils.data.rocov2` refuse the same rows (they share :func:`scan_csv`).
KINDS = ("missing_file", "not_a_file", "encoding", "malformed_row", "duplicate_id", "empty_caption",
         "id_mismatch", "missing_image", "damaged_archive", "undecodable_image", "orphan_image", "subset_manifest")


@dataclass
class Problem:
    kind: str
    where: str  # file (and line) or image ID
    detail: str

    def __str__(self) -> str:
        return f"{self.kind:18s} {self.where}: {self.detail}"


@dataclass
class CheckReport:
    root: Path
    counts: dict = field(default_factory=dict)  # {split: {"captions": n, "concepts": n, ...}}
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    cui_names: dict | None = None  # from cui_mapping.csv; CUIs outside it are warnings

    @property
    def ok(self) -> bool:
        return not self.problems

    def by_kind(self) -> Counter:
        return Counter(p.kind for p in self.problems)

    def summary(self) -> str:
        lines = [f"dataset: {self.root}"]
        for split, counts in self.counts.items():
            lines.append(f"  {split:6s} " + "  ".join(f"{k}={v}" for k, v in counts.items()))
        kinds = self.by_kind()
        lines.append("problems: " + (", ".join(f"{k}={kinds[k]}" for k in KINDS if kinds[k]) or "none"))
        lines.append(f"warnings: {len(self.warnings)}")
        return "\n".join(lines)


def _read_id_table(path: Path, header: tuple[str, str], report: CheckReport,
                   require_value: bool = False) -> dict[str, str] | None:
    """``{ID: second field}`` of one CSV, recording every problem the readers would refuse; None when the
    file cannot be read at all (then IDs are not compared with it, which would only repeat the problem)."""
    try:
        rows, problems = scan_csv(path, header, require_value)
    except MalformedCSVError as error:
        report.problems.append(Problem(error.kind, f"{path.name}:{error.line}" if error.line else path.name,
                                       error.detail))
        return None
    except OSError as error:
        report.problems.append(Problem("not_a_file", path.name, f"{type(error).__name__}: {error}"))
        return None
    report.problems.extend(Problem(p.kind, f"{path.name}:{p.line}", p.detail) for p in problems)
    return {fields[0]: fields[1] for _, fields in rows}


def _check_split(root: Path, split: str, report: CheckReport, decode: bool, workers: int,
                 declared_missing: dict[str, str]) -> None:
    files = split_files(root, split)
    if not files["captions"].exists():
        report.problems.append(Problem("missing_file", str(files["captions"].name), "captions CSV not found"))
        return
    captions = _read_id_table(files["captions"], ("ID", "Caption"), report, require_value=True)
    if captions is None:
        report.counts[split] = {"captions": 0}
        return
    counts = {"captions": len(captions)}

    for key in ("concepts", "concepts_manual"):
        path = files[key]
        if not path.exists():
            if path.name in declared_missing:  # a subset whose source lacks the file says so in subset.json
                report.warnings.append(Problem("declared_missing", path.name, declared_missing[path.name]))
            else:
                report.problems.append(Problem("missing_file", path.name, f"{key} CSV not found"))
            continue
        table = _read_id_table(path, ("ID", "CUIs"), report)
        if table is None:
            continue
        counts[key] = len(table)
        for image_id in sorted(set(captions) - set(table)):
            report.problems.append(Problem("id_mismatch", image_id, f"in {files['captions'].name} but not in {path.name}"))
        for image_id in sorted(set(table) - set(captions)):
            report.problems.append(Problem("id_mismatch", image_id, f"in {path.name} but not in {files['captions'].name}"))
        if report.cui_names is not None:
            for image_id, field_text in table.items():
                unknown = [c for c in parse_cuis(field_text) if c not in report.cui_names]
                if unknown:
                    report.warnings.append(Problem("unknown_cui", f"{path.name} {image_id}", ",".join(unknown)))

    sources = {image_id: image_source(root, split, image_id) for image_id in captions}
    present = _present_images(sources, report, decode)
    if files["images_dir"].is_dir():
        on_disk = {p.stem for p in files["images_dir"].glob("*.jpg")}
        for image_id in sorted(on_disk - set(captions)):
            report.problems.append(Problem("orphan_image", f"{split}/{image_id}.jpg", "image with no caption row"))
    counts["images"] = len(present)

    if decode and present:
        def try_open(image_id: str):
            try:
                open_rgb(sources[image_id])
                return None
            except ImageDecodeError as error:
                return Problem("undecodable_image", image_id, str(error))

        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(tqdm(pool.map(try_open, present), total=len(present), desc=f"decode {split}", leave=False))
        report.problems.extend(p for p in results if p)
    report.counts[split] = counts


def _present_images(sources: dict[str, str], report: CheckReport, decode: bool) -> list[str]:
    """IDs whose image can be read: a regular file (a FIFO or directory is never opened: that would block
    or fail later), or a member of an archive whose index opens. Without ``decode`` every member is still
    read once so its CRC is verified: ``--no-decode`` skips decoding, not the archive's integrity."""
    present, by_archive = [], {}
    for image_id, source in sources.items():
        if source.startswith("zip://"):
            archive, member = source[len("zip://"):].split("::", 1)
            by_archive.setdefault(archive, []).append((image_id, member))
            continue
        problem = regular_file_problem(source)
        if problem == "not found":
            report.problems.append(Problem("missing_image", image_id, f"{source} not found"))
        elif problem:
            report.problems.append(Problem("not_a_file", image_id, f"{source} is {problem}"))
        else:
            present.append(image_id)
    for archive, members in by_archive.items():
        name = Path(archive).name
        problem = regular_file_problem(archive)
        if problem:
            report.problems.append(Problem("not_a_file", name, f"{archive} is {problem}"))
            continue
        try:
            zf = zipfile.ZipFile(archive)
        except ZIP_ERRORS as error:  # truncated (no central directory) or not a zip at all
            report.problems.append(Problem("damaged_archive", name, f"{type(error).__name__}: {error}; "
                                           f"{len(members)} image(s) unreadable; download or copy it again"))
            continue
        with zf:
            for image_id, member in tqdm(members, desc=f"verify {name}", leave=False, disable=decode):
                stored = zip_member(zf, member)
                if stored is None:
                    report.problems.append(Problem("missing_image", image_id, f"no member {member} in {name}"))
                    continue
                if not decode:  # decoding reads (and CRC-checks) the member anyway
                    try:
                        with zf.open(stored) as handle:
                            while handle.read(1 << 20):
                                pass
                    except ZIP_ERRORS as error:
                        report.problems.append(Problem("damaged_archive", f"{name}::{stored}",
                                                       f"{type(error).__name__}: {error}; download or copy "
                                                       "the archive again"))
                        continue
                present.append(image_id)
    return present


def check_dataset(root: str | Path, splits=SPLITS, decode: bool = True, workers: int | None = None) -> CheckReport:
    """Check every split that has a captions CSV (all of ``splits`` must be present).

    A subset folder (``subset.json``, :mod:`medcap_utils.data.subset`) must be complete with every
    listed file's sha256 unchanged; the concept files its source lacks are warnings, not problems."""
    root = Path(root)
    report = CheckReport(root=root)
    if not root.is_dir():
        report.problems.append(Problem("missing_file", str(root), "dataset directory not found"))
        return report
    declared_missing: dict[str, str] = {}
    if (root / "subset.json").exists():  # written by medcap_utils.data.subset: complete, hashes match
        from medcap_utils.data.subset import verify_manifest

        found, declared_missing = verify_manifest(root)
        report.problems.extend(Problem("subset_manifest", where, detail) for where, detail in found)
    mapping = root / "cui_mapping.csv"
    try:
        report.cui_names = read_cui_mapping(mapping) if mapping.exists() else None
    except MalformedCSVError as error:
        report.problems.append(Problem(error.kind, f"{mapping.name}:{error.line}", error.detail))
    for split in splits:
        _check_split(root, split, report, decode, workers or os.cpu_count() or 1, declared_missing)
    return report
