"""ImageCLEF run files (submissions) and run directories: writers and validators.

Caption runs: ``<image_id>,<caption>`` per line (CSV quoting), concept runs:
``<image_id>,<CUI>;<CUI>;...``. Both are written with the header of the ROCOv2 files (``ID,Caption`` /
``ID,CUIs``), which the organisers' readers accept. The validator applies the official checks
(each ID exactly once, no unknown ID, no missing ID, 1-2 fields per concept line, at most 100 concepts,
no concept twice) and, stricter than the organisers, rejects a caption line with more than two fields
(an unquoted comma, which their reader silently truncates) and empty concept entries (``C1;;C2``).
Every error names the file's physical line number (1-based, header = line 1).

``write_run_dir`` is how notebooks 02-07 hand predictions to notebook 08 (``reports/runs/<name>/``).
"""
from __future__ import annotations

import csv
import datetime as _dt
import json
from pathlib import Path

from medcap_utils.paths import reports_dir, resolve

MAX_CONCEPTS = 100
FILES = {"captions": "captions.csv", "concepts": "concepts.csv"}
HEADERS = {"captions": ("ID", "Caption"), "concepts": ("ID", "CUIs")}


class RunFileError(ValueError):
    """A run file that fails validation; ``line`` is the 1-based physical line number."""

    def __init__(self, path, line: int, message: str):
        self.path, self.line, self.message = str(path), line, message
        super().__init__(f"{path}: line {line}: {message}")


def _one_line(text: str) -> str:
    return " ".join(str(text).splitlines())


def _write_csv(path, header, rows) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_caption_run(path, predictions: dict) -> Path:
    """Write ``{id: caption}`` as an ImageCLEF caption run file (line breaks in captions -> spaces)."""
    return _write_csv(path, HEADERS["captions"], ([i, _one_line(c)] for i, c in predictions.items()))


def write_concept_run(path, predictions: dict) -> Path:
    """Write ``{id: [CUI, ...]}`` as an ImageCLEF concept run file (order kept, duplicates dropped)."""
    rows = ([i, ";".join(dict.fromkeys(c.strip() for c in cuis if c.strip()))] for i, cuis in predictions.items())
    return _write_csv(path, HEADERS["concepts"], rows)


def _rows(path: Path):
    """``(line, fields)`` per record, skipping one header line (``ID,...``) if present."""
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        first = True
        for fields in reader:
            line = reader.line_num
            if first and fields and fields[0].strip() == "ID":
                first = False
                continue
            first = False
            yield line, fields


def read_run_file(path, task: str, valid_ids=None, require_all: bool = True) -> dict:
    """Validate and read a run file. ``valid_ids``: the split's IDs (None skips ID checks).

    Returns ``{id: caption}`` or ``{id: [CUI, ...]}``; raises :class:`RunFileError` on the first problem.
    """
    if task not in FILES:
        raise ValueError(f"task must be one of {list(FILES)}")
    path = Path(path)
    valid = None if valid_ids is None else set(valid_ids)
    seen: dict = {}
    out: dict = {}
    last_line = 1
    for line, fields in _rows(path):
        last_line = line
        if task == "captions" and len(fields) != 2:
            raise RunFileError(path, line, f"expected 2 fields <image_id>,<caption> (quote captions containing commas), got {len(fields)}")
        if task == "concepts" and not 1 <= len(fields) <= 2:
            raise RunFileError(path, line, f"expected 1-2 fields <image_id>[,<CUI>;<CUI>...], got {len(fields)}")
        image_id = fields[0].strip()
        if not image_id:
            raise RunFileError(path, line, "empty image ID")
        if valid is not None and image_id not in valid:
            raise RunFileError(path, line, f"image ID {image_id!r} does not exist in the split")
        if image_id in seen:
            raise RunFileError(path, line, f"image ID {image_id!r} repeated (first at line {seen[image_id]})")
        seen[image_id] = line
        if task == "captions":
            out[image_id] = fields[1]
            continue
        field = fields[1].strip() if len(fields) == 2 else ""
        cuis = [c.strip() for c in field.split(";")] if field else []
        if any(not c for c in cuis):
            raise RunFileError(path, line, f"empty concept in {field!r}")
        if len(cuis) > MAX_CONCEPTS:
            raise RunFileError(path, line, f"{len(cuis)} concepts, at most {MAX_CONCEPTS} allowed")
        upper = [c.upper() for c in cuis]
        if len(set(upper)) != len(upper):
            dup = sorted({c for c in upper if upper.count(c) > 1})
            raise RunFileError(path, line, f"concept(s) {dup} given more than once for {image_id!r}")
        out[image_id] = cuis
    if valid is not None and require_all and len(seen) != len(valid):
        missing = sorted(valid - set(seen))
        raise RunFileError(path, last_line, f"{len(missing)} image ID(s) of the split missing, e.g. {missing[:3]}")
    return out


def write_run_dir(name: str, task: str, split: str, data_dir: str, predictions: dict, meta: dict | None = None,
                  runs_root=None) -> Path:
    """Write ``reports/runs/<name>/`` with the run file and ``run.json`` {task, split, data_dir, created, meta}.

    Used by notebooks 02-07 (and 08 for the baselines); notebook 08 evaluates every such directory.
    """
    if task not in FILES:
        raise ValueError(f"task must be one of {list(FILES)}")
    run_dir = (Path(resolve(runs_root)) if runs_root else reports_dir("runs")) / name
    run_dir.mkdir(parents=True, exist_ok=True)
    (write_caption_run if task == "captions" else write_concept_run)(run_dir / FILES[task], predictions)
    info = {"task": task, "split": split, "data_dir": str(data_dir),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "meta": meta or {}}
    (run_dir / "run.json").write_text(json.dumps(info, indent=2, default=str))
    return run_dir


def read_run_dir(run_dir) -> tuple[dict, Path]:
    """``(run.json contents, path of its run file)``; raises if either is missing."""
    run_dir = Path(run_dir)
    info = json.loads((run_dir / "run.json").read_text())
    run_file = run_dir / FILES[info["task"]]
    if not run_file.exists():
        raise FileNotFoundError(f"{run_file} missing")
    return info, run_file
