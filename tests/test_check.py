"""`python -m medcap_utils.data check` passes on the demo and names every planted problem."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from medcap_utils.data.check import check_dataset


def test_demo_dataset_is_clean(demo_root):
    report = check_dataset(demo_root)
    assert report.ok, [str(p) for p in report.problems]
    assert report.counts["train"]["captions"] == report.counts["train"]["images"] == 240
    assert not report.warnings  # every CUI is named in cui_mapping.csv


@pytest.fixture
def corrupted(demo_root, tmp_path):
    root = tmp_path / "corrupt"
    shutil.copytree(demo_root, root)
    lines = (root / "test_captions.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    ids = [line.split(",", 1)[0] for line in lines[1:]]
    planted = {"truncated": ids[0], "missing": ids[1], "duplicate": ids[2], "empty": ids[3]}
    # truncated JPEG
    jpg = root / "test" / f"{planted['truncated']}.jpg"
    jpg.write_bytes(jpg.read_bytes()[:300])
    # missing image
    (root / "test" / f"{planted['missing']}.jpg").unlink()
    # duplicate ID (appended row), malformed row (three fields), empty caption
    lines = [f"{planted['empty']},\n" if line.startswith(planted["empty"] + ",") else line for line in lines]
    lines.append(f"{planted['duplicate']},A second caption for the same ID\n")
    lines.append("ROCOv2_2023_test_999999,unquoted, comma\n")
    (root / "test_captions.csv").write_text("".join(lines), encoding="utf-8")
    # an ID in concepts but not in captions
    with open(root / "test_concepts.csv", "a", encoding="utf-8") as f:
        f.write("ROCOv2_2023_test_888888,C0040405\n")
    return root, planted, len(lines)


def test_check_names_every_planted_problem(corrupted):
    root, planted, n_lines = corrupted
    report = check_dataset(root)
    assert not report.ok
    found = {(p.kind, p.where.split(":")[0].split(" ")[-1]) for p in report.problems}
    assert ("undecodable_image", planted["truncated"]) in found
    assert ("missing_image", planted["missing"]) in found
    empty = [p for p in report.problems if p.kind == "empty_caption"]  # named by file:line, the ID in the detail
    assert len(empty) == 1 and empty[0].where.startswith("test_captions.csv:") and planted["empty"] in empty[0].detail
    assert ("id_mismatch", "ROCOv2_2023_test_888888") in found
    duplicate = [p for p in report.problems if p.kind == "duplicate_id"]
    assert len(duplicate) == 1 and planted["duplicate"] in duplicate[0].detail
    assert duplicate[0].where == f"test_captions.csv:{n_lines - 1}"  # 1-based line of the repeated row
    malformed = [p for p in report.problems if p.kind == "malformed_row"]
    assert [p.where for p in malformed] == [f"test_captions.csv:{n_lines}"]
    assert report.counts["test"]["captions"] == 40  # the duplicate and the malformed row are not counted twice
    # nothing else is reported: every problem is one we planted
    assert {p.kind for p in report.problems} == {"undecodable_image", "missing_image", "empty_caption",
                                                 "id_mismatch", "duplicate_id", "malformed_row"}


def test_cli_exit_status_and_counts(demo_root, corrupted):
    root, planted, _ = corrupted
    bad = subprocess.run([sys.executable, "-m", "medcap_utils.data", "check", str(root)],
                         capture_output=True, text=True)
    assert bad.returncode == 1
    assert planted["truncated"] in bad.stdout and "problems:" in bad.stdout and "captions=" in bad.stdout
    good = subprocess.run([sys.executable, "-m", "medcap_utils.data", "check", str(demo_root), "--no-decode"],
                          capture_output=True, text=True)
    assert good.returncode == 0, good.stdout
    assert "problems: none" in good.stdout
