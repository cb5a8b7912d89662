"""Run files: round trip, and every kind of bad file rejected with its line number."""
from __future__ import annotations

import json

import pytest

from medcap_utils.evaluation.runfiles import (
    RunFileError,
    read_run_dir,
    read_run_file,
    write_caption_run,
    write_concept_run,
    write_run_dir,
)

IDS = ["ROCOv2_2023_test_000001", "ROCOv2_2023_test_000002", "ROCOv2_2023_test_000003"]


def test_round_trip(tmp_path):
    caps = {IDS[0]: 'CT, axial "view"', IDS[1]: "line\nbreak", IDS[2]: ""}
    path = write_caption_run(tmp_path / "c.csv", caps)
    back = read_run_file(path, "captions", IDS)
    assert back == {**caps, IDS[1]: "line break"}
    cons = {IDS[0]: ["C0040405", "C0817096"], IDS[1]: [], IDS[2]: ["C1306645"]}
    assert read_run_file(write_concept_run(tmp_path / "k.csv", cons), "concepts", IDS) == cons


def write(tmp_path, text):
    path = tmp_path / "run.csv"
    path.write_text(text)
    return path


@pytest.mark.parametrize("task,body,line,fragment", [
    ("captions", f"ID,Caption\n{IDS[0]},a\nROCOv2_2023_test_999999,b\n{IDS[2]},c\n", 3, "does not exist"),
    ("captions", f"ID,Caption\n{IDS[0]},a\n{IDS[1]},b\n{IDS[0]},c\n", 4, "repeated (first at line 2)"),
    ("captions", f"ID,Caption\n{IDS[0]},a\n{IDS[1]},b\n", 3, "missing"),
    ("captions", f"ID,Caption\n{IDS[0]},a\n{IDS[1]}\n{IDS[2]},c\n", 3, "expected 2 fields"),
    ("captions", f"ID,Caption\n{IDS[0]},a\n{IDS[1]},b,unquoted comma\n{IDS[2]},c\n", 3, "keep only the second field"),
    ("captions", f"{IDS[0]},a\n{IDS[1]},b\n{IDS[2]},c\n", 1, "no header line"),
    ("captions", f"ID,Caption\n{IDS[0]},a\n\n{IDS[1]},b\n{IDS[2]},c\n", 3, "blank line"),
    ("captions", f"ID,Caption\n{IDS[0]} ,a\n{IDS[1]},b\n{IDS[2]},c\n", 2, "do not strip"),
    ("captions", "", 1, "empty file"),
    ("concepts", f"ID,CUIs\n{IDS[0]},C1\n{IDS[1]},C2;C3;C2\n{IDS[2]},\n", 3, "more than once"),
    ("concepts", f"ID,CUIs\n{IDS[0]},C1;\n{IDS[1]},\n{IDS[2]},\n", 2, "wrong concept"),
    ("concepts", f" {IDS[0]},C1\n{IDS[1]},\n{IDS[2]},\n", 1, "does not exist"),
    ("concepts", f"ID,CUIs\n{IDS[0]}," + ";".join(f"C{i:07d}" for i in range(101)) + f"\n{IDS[1]},\n{IDS[2]},\n",
     2, "at most 100"),
    ("concepts", f"{IDS[0]},C1,C2\n{IDS[1]},\n{IDS[2]},\n", 1, "1-2 fields"),
    ("concepts", f"{IDS[0]},C1;;C2\n{IDS[1]},\n{IDS[2]},\n", 1, "empty concept"),
    ("concepts", f"{IDS[0]},C1\nNOPE,C2\n{IDS[2]},\n", 2, "does not exist"),
    ("concepts", f"{IDS[0]},C1\n{IDS[0]},C2\n{IDS[2]},\n", 2, "repeated"),
])
def test_bad_files_rejected_with_line(tmp_path, task, body, line, fragment):
    with pytest.raises(RunFileError) as err:
        read_run_file(write(tmp_path, body), task, IDS)
    assert err.value.line == line and fragment in err.value.message
    assert f"line {line}:" in str(err.value)


def test_one_hundred_concepts_and_no_header_are_fine(tmp_path):
    body = f"{IDS[0]}," + ";".join(f"C{i:07d}" for i in range(100)) + f"\n{IDS[1]}\n{IDS[2]},\n"
    out = read_run_file(write(tmp_path, body), "concepts", IDS)
    assert len(out[IDS[0]]) == 100 and out[IDS[1]] == [] and out[IDS[2]] == []


def test_write_run_dir(tmp_path):
    run = write_run_dir("demo-run", "concepts", "test", "data/demo", {IDS[0]: ["C1"]}, {"k": 3}, runs_root=tmp_path)
    info, run_file = read_run_dir(run)
    assert info["task"] == "concepts" and info["split"] == "test" and info["meta"] == {"k": 3}
    assert run_file.name == "concepts.csv" and "created" in json.loads((run / "run.json").read_text())
    with pytest.raises(ValueError):
        write_run_dir("x", "nope", "test", "d", {}, runs_root=tmp_path)


def test_what_spreadsheets_write_and_the_official_loaders_accept(tmp_path):
    """A BOM, CRLF and blank lines at the end; a lower-case caption header; concept headers anywhere;
    a CUI in two spellings (scored once downstream)."""
    caps = "\ufeffid,caption\r\n" + "".join(f"{i},cap {n}\r\n" for n, i in enumerate(IDS)) + "\r\n\r\n"
    path = tmp_path / "c.csv"
    path.write_bytes(caps.encode("utf-8"))
    assert read_run_file(path, "captions", IDS) == {i: f"cap {n}" for n, i in enumerate(IDS)}
    cons = f"\ufeffID,CUIs\n{IDS[0]},C0040405;c0040405\nID,CUIs\n{IDS[1]},\n{IDS[2]}\n\n"
    path.write_bytes(cons.encode("utf-8"))
    assert read_run_file(path, "concepts", IDS) == {IDS[0]: ["C0040405", "c0040405"], IDS[1]: [], IDS[2]: []}


def test_non_utf8_names_file_and_line(tmp_path):
    path = tmp_path / "run.csv"
    path.write_bytes(f"ID,Caption\n{IDS[0]},a\n{IDS[1]},".encode() + b"caf\xe9\n" + f"{IDS[2]},c\n".encode())
    with pytest.raises(RunFileError) as err:
        read_run_file(path, "captions", IDS)
    assert err.value.line == 3 and str(path) in str(err.value) and "UTF-8" in err.value.message


def test_every_rule_has_a_row_in_the_evaluation_docs():
    from pathlib import Path

    from medcap_utils.evaluation.runfiles import RULES

    doc = (Path(__file__).resolve().parents[1] / "docs" / "evaluation.md").read_text(encoding="utf-8")
    rows = [line for line in doc.splitlines() if line.startswith("| `")]
    documented = {line.split("`")[1] for line in rows}
    assert set(RULES) <= documented, sorted(set(RULES) - documented)
