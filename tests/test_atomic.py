"""medcap_utils.atomic: outputs are complete or absent; a full disk is named as one."""
import errno
import json
import os

import pytest

from medcap_utils.atomic import (
    DiskFullError,
    atomic_directory,
    atomic_write_json,
    atomic_write_text,
    disk_full_as_error,
    ensure_free_space,
    is_disk_full,
)


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "m.json"
    atomic_write_json(target, {"a": 1})
    atomic_write_json(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert sorted(p.name for p in target.parent.iterdir()) == ["m.json"]


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "m.txt"
    atomic_write_text(target, "old")

    def no_space(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(DiskFullError, match="disk full writing .*m.txt: needs 3 bytes"):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.txt"]


def test_atomic_directory_is_all_or_nothing(tmp_path):
    target = tmp_path / "model"
    with atomic_directory(target) as tmp:
        (tmp / "config.json").write_text("{}")
    with pytest.raises(KeyboardInterrupt):
        with atomic_directory(target) as tmp:
            (tmp / "config.json").write_text("{half")
            raise KeyboardInterrupt
    assert (target / "config.json").read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    with atomic_directory(target) as tmp:
        (tmp / "weights.bin").write_bytes(b"x")
    assert sorted(p.name for p in target.iterdir()) == ["weights.bin"]


def test_full_disk_detection_and_space_check(tmp_path):
    assert is_disk_full(OSError(errno.ENOSPC, "x"))
    assert is_disk_full(RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0"))
    assert not is_disk_full(RuntimeError("shape mismatch"))
    with pytest.raises(DiskFullError, match=r"needs .* free"):
        ensure_free_space(tmp_path / "not" / "yet", needed=2**62)
    ensure_free_space(tmp_path, needed=1)
    with pytest.raises(DiskFullError):
        with disk_full_as_error(tmp_path / "ckpt"):
            raise RuntimeError("unexpected pos 1 vs 0")
    with pytest.raises(ValueError):
        with disk_full_as_error(tmp_path / "ckpt"):
            raise ValueError("not a disk problem")
