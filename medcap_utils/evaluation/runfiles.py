"""ImageCLEF run files (submissions) and run directories: writers and validators.

Caption runs: ``<image_id>,<caption>`` per line (CSV quoting), concept runs:
``<image_id>,<CUI>;<CUI>;...``. Both are written with the header of the ROCOv2 files (``ID,Caption`` /
``ID,CUIs``), which the organisers' readers accept.

The validator follows the organisers' 2025 loaders (the concept loader is the same in 2023-2025;
the 2023/2024 caption loader cannot run, so its year uses the 2025 rules), rule by rule, except
where following them would let a file through whose score the official code corrupts; then the
file is rejected with a message saying what the official evaluator would have done. The full table
(every rule, the official behaviour, medcap's choice) is in docs/evaluation.md; ``RULES`` below
lists the same rules by name. In short:

- captions: the first line must be a header (its first field ``id`` in any case); every further
  line exactly ``<ID>,<caption>``: a third field is rejected (the official code keeps the second
  field, cutting the caption at an unquoted comma).
- concepts: any line whose first field contains ``ID`` is a header (so a repeated header and one
  behind a BOM are skipped); 1-2 fields; at most 100 concepts; no concept twice in the same
  spelling (case variants are accepted and scored once, as officially); an empty entry
  (``C1;;C2``, ``C1;``) is rejected (the official code scores it as a wrong concept).
- both: IDs are compared exactly (a space around an ID makes it unknown, as officially); each ID
  once, no unknown or missing ID. A UTF-8 byte-order mark and blank lines at the end of the file,
  which spreadsheet tools write, are accepted (the official code would crash or reject); a blank
  line elsewhere is rejected; bytes that are not UTF-8 are an error naming the line.

Every error names the file's physical line number (1-based, header = line 1).
``write_run_dir`` is how notebooks 02-07 hand predictions to notebook 08 (``reports/runs/<name>/``).
"""
from __future__ import annotations

import csv
import datetime as _dt
import io
import json
from pathlib import Path

from medcap_utils.atomic import atomic_directory
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


# The rules of read_run_file; docs/evaluation.md has one table row per name (a test checks it).
RULES = {
    "encoding": "UTF-8; other bytes: error naming the line",
    "bom": "a byte-order mark at the start is ignored",
    "blank_lines": "blank lines at the end are ignored; elsewhere an error",
    "caption_header": "caption files: first line is a header whose first field is 'id' in any case",
    "concept_header": "concept files: any line whose first field contains 'ID' is a header",
    "caption_fields": "caption lines: exactly 2 fields",
    "concept_fields": "concept lines: 1 or 2 fields",
    "id_exact": "IDs compared exactly: surrounding spaces make an ID unknown",
    "id_unknown": "an ID not in the split is an error",
    "id_repeated": "an ID given twice is an error",
    "id_missing": "every ID of the split must be present",
    "concept_empty_entry": "an empty concept entry (C1;;C2, C1;) is an error",
    "concept_max": "at most 100 concepts per image",
    "concept_repeated": "the same concept twice (same spelling) is an error; case variants count once",
}
MISSING_HEADER = ("no header line (expected ID,Caption): the official evaluator reads the first line as a record "
                  "it neither checks nor counts, so such a file fails its count check")


def _decode(path: Path) -> str:
    """The file's text without a leading byte-order mark; non-UTF-8 bytes raise with their line."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise RunFileError(path, line, f"not UTF-8: byte {data[err.start:err.start + 1]!r} "
                                       f"(the official evaluators stop with a UnicodeDecodeError)") from None


def _records(path: Path, task: str):
    """``(line, fields)`` per record after the header rules of ``task``; blank lines at the end dropped."""
    reader = csv.reader(io.StringIO(_decode(path), newline=""))
    rows = []
    try:
        for fields in reader:
            rows.append((reader.line_num, fields))
    except csv.Error as err:
        raise RunFileError(path, reader.line_num, f"CSV error: {err}") from None
    while rows and not rows[-1][1]:
        rows.pop()
    if not rows:
        raise RunFileError(path, 1, "empty file")
    if task == "captions":
        line, first = rows[0]
        if not first or first[0].lower() != "id":
            raise RunFileError(path, line, MISSING_HEADER)
        rows = rows[1:]
    for line, fields in rows:
        if not fields:
            raise RunFileError(path, line, "blank line (allowed only at the end of the file; the official "
                                           "evaluators reject or crash on it)")
        if task == "concepts" and "ID" in fields[0]:
            continue  # the official concept loader skips every such line as a header
        yield line, fields


def _concepts(path: Path, line: int, image_id: str, fields: list) -> list:
    field = fields[1].strip() if len(fields) == 2 else ""
    cuis = [c.strip() for c in field.split(";")] if field else []
    if len(cuis) > MAX_CONCEPTS:
        raise RunFileError(path, line, f"{len(cuis)} concepts, at most {MAX_CONCEPTS} allowed")
    if any(not c for c in cuis):
        raise RunFileError(path, line, f"empty concept in {field!r}: the official evaluator would score the "
                                       "empty entry as a wrong concept and lower this image's F1")
    if len(set(cuis)) != len(cuis):
        dup = sorted({c for c in cuis if cuis.count(c) > 1})
        raise RunFileError(path, line, f"concept(s) {dup} given more than once for {image_id!r}")
    return cuis


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
    for line, fields in _records(path, task):
        last_line = line
        if task == "captions" and len(fields) < 2:
            raise RunFileError(path, line, f"expected 2 fields <image_id>,<caption>, got {len(fields)}")
        if task == "captions" and len(fields) > 2:
            raise RunFileError(path, line, f"{len(fields)} fields (quote captions containing commas): the official "
                                           "evaluator would keep only the second field, cutting the caption")
        if task == "concepts" and not 1 <= len(fields) <= 2:
            raise RunFileError(path, line, f"expected 1-2 fields <image_id>[,<CUI>;<CUI>...], got {len(fields)}")
        image_id = fields[0]
        if not image_id.strip():
            raise RunFileError(path, line, "empty image ID")
        if valid is not None and image_id not in valid:
            hint = " (spaces around the ID: the official evaluators do not strip them)" \
                if image_id.strip() in valid else ""
            raise RunFileError(path, line, f"image ID {image_id!r} does not exist in the split{hint}")
        if image_id in seen:
            raise RunFileError(path, line, f"image ID {image_id!r} repeated (first at line {seen[image_id]})")
        seen[image_id] = line
        out[image_id] = fields[1] if task == "captions" else _concepts(path, line, image_id, fields)
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
    info = {"task": task, "split": split, "data_dir": str(data_dir),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "meta": meta or {}}
    # Built under a temporary name and renamed into place: notebook 08 never sees a run file without its
    # run.json (or new predictions with an old run.json), and a rewrite drops evaluations of the old ones.
    with atomic_directory(run_dir) as tmp:
        (write_caption_run if task == "captions" else write_concept_run)(tmp / FILES[task], predictions)
        (tmp / "run.json").write_text(json.dumps(info, indent=2, default=str))
    return run_dir


def read_run_dir(run_dir) -> tuple[dict, Path]:
    """``(run.json contents, path of its run file)``; raises if either is missing."""
    run_dir = Path(run_dir)
    info = json.loads((run_dir / "run.json").read_text())
    run_file = run_dir / FILES[info["task"]]
    if not run_file.exists():
        raise FileNotFoundError(f"{run_file} missing")
    return info, run_file
