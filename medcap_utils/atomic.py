"""Outputs that are either complete or absent: write to a temporary name, then move into place.

Every file or folder another step reads later (model folders, run folders, metrics, the manifest, the
image cache) goes through here, so a kill or a full disk never leaves a half-written output that a later
run would take for a finished one. A full disk is reported as :class:`DiskFullError` naming the path,
the bytes needed (when known) and the bytes free, instead of a SIGBUS or a library's internal message.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterator


class DiskFullError(OSError):
    """Not enough free space to write ``path``; says how much was needed (when known) and how much is free."""

    def __init__(self, path: str | os.PathLike, needed: int | None = None, free: int | None = None):
        self.path, self.needed = Path(path), needed
        self.free = free if free is not None else free_bytes(path)
        need = f"needs {_size(needed)}, " if needed is not None else ""
        super().__init__(errno.ENOSPC, f"disk full writing {self.path}: {need}{_size(self.free)} free "
                                       "on that file system; free space there or point the output elsewhere "
                                       "(MEDCAP_REPORTS for reports/)")

    def __str__(self) -> str:  # one line, without OSError's "[Errno 28]" prefix
        return self.strerror


def _size(n: int | None) -> str:
    if n is None:
        return "? bytes"
    return f"{n:,} bytes ({n / 2**20:.1f} MiB)"


def _existing(path: Path) -> Path:
    """The nearest ancestor of ``path`` that exists (disk_usage needs an existing path)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def free_bytes(path: str | os.PathLike) -> int:
    return shutil.disk_usage(_existing(Path(path))).free


def ensure_free_space(path: str | os.PathLike, needed: int, margin: int = 16 * 2**20) -> None:
    """Raise :class:`DiskFullError` before writing ``needed`` bytes under ``path`` if they (plus a margin for
    metadata) do not fit. Used before memory-mapped writes, where running out of space is a SIGBUS."""
    free = free_bytes(path)
    if needed + margin > free:
        raise DiskFullError(path, needed=needed, free=free)


def is_disk_full(exc: BaseException) -> bool:
    """True for the ways a full disk surfaces: ENOSPC/EDQUOT, or torch's serializer failing mid-write."""
    if isinstance(exc, DiskFullError):
        return True
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("unexpected pos" in text or "No space left" in text
                                              or "file write failed" in text)


@contextlib.contextmanager
def disk_full_as_error(path: str | os.PathLike, needed: int | None = None) -> Iterator[None]:
    """Re-raise any full-disk failure inside the block as :class:`DiskFullError` for ``path``."""
    try:
        yield
    except DiskFullError:
        raise
    except (OSError, RuntimeError) as exc:
        if is_disk_full(exc):
            raise DiskFullError(path, needed=needed) from exc
        raise


def _temp_name(path: Path, tag: str) -> Path:
    return path.with_name(f".{path.name}.{tag}-{os.getpid()}")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary sibling, fsync it, then ``os.replace`` (all or nothing)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(path, "tmp")
    try:
        with disk_full_as_error(path, needed=len(data)):
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=indent, default=str) + "\n")


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Build a folder under a temporary sibling name; on success it replaces ``path`` in one rename.

    On an exception (or a kill) the temporary folder is removed (or left under a dot-name that no reader
    looks at) and ``path`` keeps its previous content, if it had any.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(path, "partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        with disk_full_as_error(path):
            yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = _temp_name(path, "old")
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    if old.exists():
        shutil.rmtree(old, ignore_errors=True)
