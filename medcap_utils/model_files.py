"""Model folders this project writes are checksummed, and every loader checks a folder before loading it.

A folder saved by the project gets ``checksums.sha256`` (``sha256sum`` format: ``sha256sum -c`` checks it
by hand), written last inside :func:`medcap_utils.atomic.atomic_directory` or as the last file of an in-place
save, so it doubles as the "finished" marker. :func:`verify_model_dir` then turns a truncated, overwritten
or missing file into one :class:`CorruptModelError` naming the file, what is wrong and the fix, instead of a
library error that names no file, or worse, a model that loads with overwritten weights and captions
nothing. Folders without the file (a hub cache snapshot, a user's own folder, a folder from before this
module) are still checked for truncated ``.json`` and ``.safetensors`` files, which are detectable by
structure alone.
"""
from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Iterable

from medcap_utils.atomic import atomic_write_text
from medcap_utils.hub import HubModelError

CHECKSUMS = "checksums.sha256"
FIX = ("Fix: delete the folder ({dir}) and rerun the notebook (or command) that writes it; a folder of your "
       "own: write it again with save_pretrained")


class CorruptModelError(HubModelError):
    """A model folder with a missing, truncated or changed file; the message names the file, what is wrong
    and the fix. A :class:`~medcap_utils.hub.HubModelError` (an ``OSError``), so the caption CLI reports it
    in one line like a missing or corrupt hub checkpoint."""

    def __init__(self, directory: str | Path, file: str, problem: str, fix: str | None = None):
        self.directory, self.file, self.problem = Path(directory), file, problem
        super().__init__(f"{Path(directory) / file} {problem}. {fix or FIX.format(dir=directory)}.")

    def __str__(self) -> str:  # without OSError's tuple formatting
        return self.args[0]


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks (model checksums, subset manifests, repeat-check)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _files(directory: Path, exclude: Iterable[str] = ()) -> list[Path]:
    """Every file under ``directory`` except dot-names (temporary files of atomic writes), the checksum
    file itself and the top-level entries named in ``exclude`` (e.g. a training run's checkpoints)."""
    skip = set(exclude)
    out = []
    for p in sorted(directory.rglob("*")):
        rel = p.relative_to(directory)
        if rel.parts[0] in skip or any(part.startswith(".") for part in rel.parts) or str(rel) == CHECKSUMS:
            continue
        if p.is_file():
            out.append(p)
    return out


def write_checksums(directory: str | Path, exclude: Iterable[str] = ()) -> Path:
    """Record the sha256 of every file of ``directory`` in ``directory/checksums.sha256`` (call it last:
    its presence says the folder is complete)."""
    directory = Path(directory)
    lines = [f"{file_sha256(p)}  {p.relative_to(directory).as_posix()}\n" for p in _files(directory, exclude)]
    return atomic_write_text(directory / CHECKSUMS, "".join(lines))


def is_complete(directory: str | Path) -> bool:
    """A project folder whose save finished (its checksum file, written last, exists)."""
    return (Path(directory) / CHECKSUMS).is_file()


def structure_problem(path: Path) -> str | None:
    """What is wrong with a ``.json`` or ``.safetensors`` file that can be told without a checksum."""
    try:
        if path.suffix == ".json":
            json.loads(path.read_bytes().decode("utf-8"))
        elif path.suffix == ".safetensors":
            size = path.stat().st_size
            with path.open("rb") as fh:
                head = fh.read(8)
                if len(head) < 8:
                    return f"is truncated ({size} bytes, no safetensors header)"
                n = struct.unpack("<Q", head)[0]
                if n > size - 8:
                    return f"is truncated (safetensors header declares {n} bytes, file has {size})"
                header = json.loads(fh.read(n))
            end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
            if 8 + n + end != size:
                return f"is truncated (its tensors need {8 + n + end} bytes, file has {size})"
    except (ValueError, UnicodeDecodeError, KeyError, TypeError) as err:
        kind = "is not valid JSON" if path.suffix == ".json" else "has a corrupt safetensors header"
        return f"{kind}: truncated or overwritten ({type(err).__name__}: {str(err)[:80]})"
    return None


# Folders already verified in this process, keyed by every file's (name, size, mtime): a notebook loads the
# same folder several times (processor, then model), and hashing a large model takes seconds each time.
_verified: set = set()


def _fingerprint(directory: Path) -> tuple:
    return (str(directory.resolve()),) + tuple(
        (str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(directory.rglob("*")) if p.is_file())


def verify_model_dir(directory: str | Path, require_checksums: bool = False, fix: str | None = None) -> Path:
    """Raise :class:`CorruptModelError` unless ``directory`` is intact.

    With ``checksums.sha256``: every listed file must exist and match (a mismatch is reported as truncated
    or invalid JSON when its structure says so, otherwise as changed since it was saved). Without it:
    an error when ``require_checksums`` (a project folder whose save never finished), otherwise only the
    structural checks of ``.json`` and ``.safetensors`` files (hub snapshots, users' own folders).
    ``fix`` replaces the default advice (delete the folder and rerun what writes it).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise CorruptModelError(directory, "", "does not exist", fix)
    key = _fingerprint(directory)
    if key in _verified:
        return directory
    listing = directory / CHECKSUMS
    if listing.is_file():
        for line in listing.read_text().splitlines():
            digest, _, name = line.partition("  ")
            path = directory / name
            if not path.is_file():
                raise CorruptModelError(directory, name, f"is missing (listed in {CHECKSUMS})", fix)
            if file_sha256(path) != digest:
                problem = structure_problem(path)
                raise CorruptModelError(directory, name, problem or f"does not match its checksum in {CHECKSUMS} "
                                        f"(overwritten or truncated after it was saved; {path.stat().st_size} "
                                        "bytes now)", fix)
    elif require_checksums:
        raise CorruptModelError(directory, CHECKSUMS, "is missing: the save of this folder did not finish "
                                "(killed or failed), or it was written before checksums were recorded", fix)
    else:
        for path in _files(directory):
            problem = structure_problem(path) if path.suffix in (".json", ".safetensors") else None
            if problem:
                raise CorruptModelError(directory, str(path.relative_to(directory)), problem, fix)
    _verified.add(key)
    return directory
