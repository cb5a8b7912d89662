"""Reading one data file without hanging or crashing (notebooks 00_data_setup and every notebook that loads images).

``regular_file_problem`` says why a path cannot be read without opening it (a FIFO would block); ``read_image_bytes``
reads an image given by :func:`medcap_utils.data.rocov2.image_source` from a folder or a member of a split zip, and
raises :class:`ImageSourceError` naming the file and what is wrong with it (``ZIP_ERRORS``: what a damaged archive
raises).
"""
from __future__ import annotations

import os
import stat
import threading
import zipfile
import zlib
from pathlib import Path


class ImageSourceError(OSError):
    """An image that cannot be read (missing, not a regular file, or in a damaged zip); names the source."""

    def __init__(self, source: str, reason: str):
        super().__init__(f"cannot read image {source}: {reason}")
        self.source, self.reason = source, reason

    def __str__(self) -> str:  # without OSError's "[Errno ...]" prefix
        return self.args[0]


def file_type(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a regular file"


def regular_file_problem(path: str | Path) -> str | None:
    """None for a regular file, else why it cannot be read (missing, a directory, a FIFO...), without
    opening it: opening a FIFO blocks until something writes to it."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "not found"
    except OSError as error:
        return f"{type(error).__name__}: {error.strerror or error}"
    return None if stat.S_ISREG(mode) else f"{file_type(mode)}, not a regular file"


_open_zips = threading.local()  # one ZipFile per thread and archive: re-reading the index per image is O(N^2)

#: What a damaged or truncated archive raises while its index or a member is read.
ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError)


def _zip(archive: str) -> zipfile.ZipFile:
    table = _open_zips.__dict__.setdefault("archives", {})
    if archive not in table:
        table[archive] = zipfile.ZipFile(archive)
    return table[archive]


def zip_member(zf: zipfile.ZipFile, member: str) -> str | None:
    """The stored name of ``member`` (some distributions store members without the split folder)."""
    names = zf.NameToInfo
    for name in (member, member.split("/", 1)[-1]):
        if name in names:
            return name
    return None


def read_image_bytes(source: str) -> bytes:
    """Raw bytes of an image given by :func:`medcap_utils.data.rocov2.image_source` (a file or a member of a split zip);
    :class:`ImageSourceError` names the file or member and what is wrong with it."""
    if source.startswith("zip://"):
        archive, member = source[len("zip://"):].split("::", 1)
        problem = regular_file_problem(archive)
        if problem:
            raise ImageSourceError(source, f"archive {archive}: {problem}")
        try:
            zf = _zip(archive)
        except ZIP_ERRORS as error:
            raise ImageSourceError(source, f"damaged archive {archive} ({type(error).__name__}: {error}); "
                                           "download or copy it again") from error
        name = zip_member(zf, member)
        if name is None:
            raise ImageSourceError(source, f"no member {member} in {archive}")
        try:
            return zf.read(name)
        except ZIP_ERRORS as error:  # bad CRC, truncated data
            raise ImageSourceError(source, f"damaged member of {archive} ({type(error).__name__}: {error}); "
                                           "download or copy the archive again") from error
    problem = regular_file_problem(source)
    if problem:
        raise ImageSourceError(source, problem)
    try:
        return Path(source).read_bytes()
    except OSError as error:
        raise ImageSourceError(source, f"{type(error).__name__}: {error.strerror or error}") from error
