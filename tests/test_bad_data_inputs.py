"""Issue 14, data side: every bad input is refused by the readers exactly as ``check`` reports it, and
the CLIs say so in one line with their documented exit code. Each test plants one bad input in an
otherwise clean 8-image split (ROCOv2 layout) and checks the problem kind and the file:line named."""
from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medcap_utils.data import cache as cache_mod
from medcap_utils.data.__main__ import main as data_main
from medcap_utils.data.check import check_dataset
from medcap_utils.data.images import ImageDecodeError, open_rgb
from medcap_utils.data.rocov2 import (
    MalformedCSVError,
    load_split,
    read_captions,
    read_concepts,
    read_cui_mapping,
    scan_csv,
    split_frame,
)

REPO = Path(__file__).resolve().parents[1]
IDS = [f"ROCOv2_2023_test_{k:06d}" for k in range(1, 9)]
CAPTIONS = [f"Axial CT of case {k}, contrast enhanced." for k in range(1, 9)]
CUIS = ["C0040405;C0817096"] * 8


def _csv_bytes(header: str, rows: list) -> bytes:
    return (header + "\n").encode() + b"".join((r if isinstance(r, bytes) else r.encode()) + b"\n" for r in rows)


def caption_rows() -> list:
    return [f'{i},"{c}"' for i, c in zip(IDS, CAPTIONS)]


def concept_rows() -> list:
    return [f"{i},{c}" for i, c in zip(IDS, CUIS)]


def make_split(root: Path, captions: bytes | None = None, concepts: bytes | None = None,
               zipped: bool = False) -> Path:
    """8 images of 12x10 px (PNG bytes under .jpg names, as ROCOv2 mixes formats), all three CSVs."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "test_captions.csv").write_bytes(captions if captions is not None
                                             else _csv_bytes("ID,Caption", caption_rows()))
    (root / "test_concepts.csv").write_bytes(concepts if concepts is not None
                                             else _csv_bytes("ID,CUIs", concept_rows()))
    (root / "test_concepts_manual.csv").write_bytes(_csv_bytes("ID,CUIs", [f"{i},C0040405" for i in IDS]))
    (root / "cui_mapping.csv").write_text("CUI,Canonical name\nC0040405,X-Ray Computed Tomography\nC0817096,Chest\n")
    images = {}
    for k, image_id in enumerate(IDS):
        buffer = io.BytesIO()
        Image.fromarray(np.full((10, 12, 3), 20 * k, dtype=np.uint8)).save(buffer, format="PNG")
        images[image_id] = buffer.getvalue()
    if zipped:
        with zipfile.ZipFile(root / "test_images.zip", "w", compression=zipfile.ZIP_STORED) as zf:
            for image_id, data in images.items():
                zf.writestr(f"test/{image_id}.jpg", data)
    else:
        (root / "test").mkdir(exist_ok=True)
        for image_id, data in images.items():
            (root / "test" / f"{image_id}.jpg").write_bytes(data)
    return root


@contextlib.contextmanager
def alarm(seconds: int):
    """Fail instead of hanging: the code before the fix opened FIFOs (blocks until a writer appears)."""
    def ring(*_):
        raise TimeoutError(f"still blocked after {seconds} s")

    previous = signal.signal(signal.SIGALRM, ring)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _error_line(err: str) -> str:
    """The one line a CLI prints for a bad input (progress bars aside); never a traceback."""
    lines = [line for line in err.splitlines() if line.strip() and "%|" not in line]
    assert "Traceback" not in err and len(lines) == 1, err
    return lines[0]


def _problems(report) -> set:
    return {(p.kind, p.where) for p in report.problems}


# --- one reading path: the readers refuse exactly what check reports -----------------------------------

def _with(rows: list, index: int, row) -> list:
    rows = list(rows)
    rows[index] = row
    return rows


UNCLOSED_NEAR_END = _csv_bytes("ID,Caption", _with(_with(caption_rows(), 6, f'{IDS[6]},"Arrow shows the lesion'),
                                                    7, f"{IDS[7]},Plain film of the hand"))

#: (case, captions CSV bytes, problem kind, 1-based line named). Row k of IDS is on line k + 2.
CAPTION_CASES = [
    ("duplicate_caption_id", _csv_bytes("ID,Caption", caption_rows() + [f"{IDS[2]},A second caption"]),
     "duplicate_id", 10),
    # the quote opened on line 4 closes at a stray quote ending line 5: csv parses it cleanly, 7 rows
    ("unterminated_quote_swallows_next_row", _csv_bytes("ID,Caption", _with(_with(
        caption_rows(), 2, f'{IDS[2]},"Arrow shows the lesion'), 3, f'{IDS[3]},Caption ending in a stray quote"')),
     "malformed_row", 4),
    ("unterminated_quote_mid_file", _csv_bytes("ID,Caption", _with(_with(
        caption_rows(), 2, f'{IDS[2]},"Arrow shows the lesion'), 4, f'{IDS[4]},He said "yes" twice')),
     "malformed_row", 4),
    # the last row has no comma and no quote: without strict quoting it silently became part of row 7
    ("unterminated_quote_near_end", UNCLOSED_NEAR_END, "malformed_row", 8),
    ("empty_caption", _csv_bytes("ID,Caption", _with(caption_rows(), 4, f"{IDS[4]},")), "empty_caption", 6),
    ("whitespace_only_caption", _csv_bytes("ID,Caption", _with(caption_rows(), 4, f'{IDS[4]},"   "')),
     "empty_caption", 6),
    ("wrong_header", _csv_bytes("ID,Text", caption_rows()), "malformed_row", 1),
    ("extra_column", _csv_bytes("ID,Caption", _with(caption_rows(), 1, f"{IDS[1]},unquoted, comma")),
     "malformed_row", 3),
    ("blank_line", _csv_bytes("ID,Caption", caption_rows()[:3] + [""] + caption_rows()[3:]), "malformed_row", 5),
    ("empty_id", _csv_bytes("ID,Caption", caption_rows() + [",A caption without an ID"]), "malformed_row", 10),
    ("non_utf8_byte", _csv_bytes("ID,Caption", _with(caption_rows(), 5, IDS[5].encode() + b",Caf\xe9 sign")),
     "encoding", 7),
    ("field_over_131072_chars", _csv_bytes("ID,Caption", _with(caption_rows(), 3, f"{IDS[3]},{'x' * 140_000}")),
     "malformed_row", 5),
]


@pytest.mark.parametrize("case,data,kind,line", CAPTION_CASES, ids=[c[0] for c in CAPTION_CASES])
def test_bad_captions_csv_refused_by_every_reader_as_check_reports(tmp_path, case, data, kind, line):
    root = make_split(tmp_path / "d", captions=data)
    path = root / "test_captions.csv"
    with pytest.raises(MalformedCSVError) as error:
        read_captions(path)  # evaluate's ground truth, bench
    assert (error.value.kind, error.value.line) == (kind, line)
    assert f"{path}: line {line}: " in str(error.value)
    with pytest.raises(MalformedCSVError) as error:
        split_frame(root, "test")  # the image cache, training, captioning, load_split
    assert (error.value.kind, error.value.line) == (kind, line)
    report = check_dataset(root, splits=["test"], decode=False)
    assert (kind, f"test_captions.csv:{line}") in _problems(report), [str(p) for p in report.problems]


CONCEPT_CASES = [
    ("duplicate_concept_id", _csv_bytes("ID,CUIs", concept_rows() + [f"{IDS[1]},C0024485"]), "duplicate_id", 10),
    ("non_utf8_concepts", _csv_bytes("ID,CUIs", _with(concept_rows(), 0, IDS[0].encode() + b",C004\xff0405")),
     "encoding", 2),
    ("unterminated_quote_concepts", _csv_bytes("ID,CUIs", _with(concept_rows(), 7, f'{IDS[7]},"C0040405')),
     "malformed_row", 9),
]


@pytest.mark.parametrize("case,data,kind,line", CONCEPT_CASES, ids=[c[0] for c in CONCEPT_CASES])
def test_bad_concepts_csv_refused_as_check_reports(tmp_path, case, data, kind, line):
    root = make_split(tmp_path / "d", concepts=data)
    with pytest.raises(MalformedCSVError) as error:
        read_concepts(root / "test_concepts.csv")
    assert (error.value.kind, error.value.line) == (kind, line)
    with pytest.raises(MalformedCSVError, match=f"line {line}"):
        split_frame(root, "test")
    assert (kind, f"test_concepts.csv:{line}") in _problems(check_dataset(root, splits=["test"], decode=False))


def test_id_in_captions_but_not_in_concepts_is_refused_not_an_empty_list(tmp_path):
    root = make_split(tmp_path / "d", concepts=_csv_bytes("ID,CUIs", concept_rows()[:-1]))
    with pytest.raises(MalformedCSVError) as error:
        split_frame(root, "test")
    assert error.value.kind == "id_mismatch" and IDS[-1] in str(error.value)
    assert ("id_mismatch", IDS[-1]) in _problems(check_dataset(root, splits=["test"], decode=False))


def test_utf8_byte_order_mark_is_read_not_taken_for_the_header(tmp_path):
    root = make_split(tmp_path / "d", captions=b"\xef\xbb\xbf" + _csv_bytes("ID,Caption", caption_rows()))
    assert read_captions(root / "test_captions.csv")["ID"].tolist() == IDS
    assert check_dataset(root, splits=["test"], decode=False).ok


def test_cui_mapping_not_utf8_is_a_problem_not_a_crash(tmp_path):
    root = make_split(tmp_path / "d")
    (root / "cui_mapping.csv").write_bytes(b"CUI,Canonical name\nC0040405,X-Ray\nC0817096,Ch\xe9st\n")
    with pytest.raises(MalformedCSVError, match="line 3"):
        read_cui_mapping(root / "cui_mapping.csv")
    assert ("encoding", "cui_mapping.csv:3") in _problems(check_dataset(root, splits=["test"], decode=False))


@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_captions_csv_that_is_not_a_regular_file(tmp_path, kind):
    root = make_split(tmp_path / "d")
    path = root / "test_captions.csv"
    path.unlink()
    os.mkfifo(path) if kind == "fifo" else path.mkdir()
    with alarm(20):
        with pytest.raises(MalformedCSVError, match="not a regular file") as error:
            read_captions(path)
        assert error.value.kind == "not_a_file"
        assert "not_a_file" in {p.kind for p in check_dataset(root, splits=["test"], decode=False).problems}


def test_real_rocov2_rows_read_cleanly(sample_dir):
    """The 93 real rows (quoted commas, unicode quotes, leading/trailing spaces) pass the strict scan."""
    for name, header in (("test_captions.csv", ("ID", "Caption")), ("test_concepts.csv", ("ID", "CUIs"))):
        rows, problems = scan_csv(sample_dir / name, header, require_value=name.endswith("captions.csv"))
        assert problems == [] and len(rows) == 93
    assert len(split_frame(sample_dir, "test")) == 93


# --- the image cache and load_split follow the same path ------------------------------------------------

def test_duplicate_id_never_reaches_the_cache(tmp_path):
    """Before: 9 rows cached for 8 IDs."""
    root = make_split(tmp_path / "d", captions=_csv_bytes("ID,Caption", caption_rows() + [f"{IDS[0]},again"]))
    with pytest.raises(MalformedCSVError) as error:
        cache_mod.get_image_cache(root, "test", 8, cache_dir=tmp_path / "cache")
    assert (error.value.kind, error.value.line) == ("duplicate_id", 10)
    with pytest.raises(MalformedCSVError):
        load_split(root, "test")


def test_cache_cli_names_bad_csv_in_one_line(tmp_path, capsys):
    root = make_split(tmp_path / "d", captions=_csv_bytes("ID,Caption", _with(caption_rows(), 5,
                                                                                IDS[5].encode() + b",Caf\xe9")))
    code = data_main(["cache", str(root), "--size", "8", "--splits", "test"])
    err = capsys.readouterr().err
    assert code == 1 and f"{root / 'test_captions.csv'}: line 7:" in _error_line(err) and "UTF-8" in err


# --- zip archives, with and without --no-decode ---------------------------------------------------------

def _damage(path: Path, how: str) -> str:
    """Damage a split zip; returns the member (or archive) a reader must name."""
    data = path.read_bytes()
    if how == "not_a_zip":
        path.write_bytes(b"this is not a zip archive" * 10)
        return path.name
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
        return path.name
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(f"test/{IDS[3]}.jpg")
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    flipped = bytearray(data)
    flipped[start + 20] ^= 0xFF  # inside the stored PNG bytes: the CRC no longer matches
    path.write_bytes(bytes(flipped))
    return f"{path.name}::test/{IDS[3]}.jpg"


@pytest.mark.parametrize("decode", [False, True], ids=["no_decode", "decode"])
@pytest.mark.parametrize("how", ["not_a_zip", "truncated", "bad_crc"])
def test_damaged_zip_is_a_named_problem(tmp_path, how, decode):
    root = make_split(tmp_path / "d", zipped=True)
    where = _damage(root / "test_images.zip", how)
    report = check_dataset(root, splits=["test"], decode=decode)
    if how == "bad_crc" and decode:  # decoding reads the member: reported for that image
        bad = [p for p in report.problems if p.kind == "undecodable_image"]
        assert [p.where for p in bad] == [IDS[3]] and "damaged member" in bad[0].detail
    else:
        assert ("damaged_archive", where) in _problems(report), [str(p) for p in report.problems]
    assert not report.ok


def test_zip_member_missing_with_no_decode(tmp_path):
    root = make_split(tmp_path / "d", zipped=True)
    zip_path = root / "test_images.zip"
    with zipfile.ZipFile(zip_path) as zf:
        kept = {n: zf.read(n) for n in zf.namelist() if IDS[5] not in n}
    with zipfile.ZipFile(zip_path, "w") as zf:
        for name, data in kept.items():
            zf.writestr(name, data)
    report = check_dataset(root, splits=["test"], decode=False)
    assert _problems(report) == {("missing_image", IDS[5])}
    assert report.counts["test"]["images"] == 7


def test_cache_cli_damaged_zip_one_line_no_traceback(tmp_path, capsys):
    root = make_split(tmp_path / "d", zipped=True)
    _damage(root / "test_images.zip", "truncated")
    code = data_main(["cache", str(root), "--size", "8", "--splits", "test"])
    err = capsys.readouterr().err
    line = _error_line(err)
    assert code == 1 and "damaged archive" in line and str(root / "test_images.zip") in line


# --- files named like images that are not regular files ---------------------------------------------------

@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_non_regular_image_reported_without_opening_it(tmp_path, kind):
    root = make_split(tmp_path / "d")
    image = root / "test" / f"{IDS[2]}.jpg"
    image.unlink()
    os.mkfifo(image) if kind == "fifo" else image.mkdir()
    with alarm(20):
        report = check_dataset(root, splits=["test"], decode=False)
        assert ("not_a_file", IDS[2]) in _problems(report)
        with pytest.raises(ImageDecodeError, match="not a regular file"):
            open_rgb(image)  # the cache and the caption CLI decode through here
        with pytest.raises(OSError, match=f"{IDS[2]}.jpg.*not a regular file"):
            load_split(root, "test")


def test_check_cli_with_a_fifo_image_and_decoding_does_not_hang(tmp_path):
    root = make_split(tmp_path / "d")
    image = root / "test" / f"{IDS[2]}.jpg"
    image.unlink()
    os.mkfifo(image)
    proc = subprocess.run([sys.executable, "-m", "medcap_utils.data", "check", str(root), "--splits", "test"],
                          capture_output=True, text=True, timeout=120, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 1 and "not_a_file" in proc.stdout and "Traceback" not in proc.stderr


def test_caption_cli_fifo_image_is_a_one_line_error(tmp_path, capsys):
    from medcap_utils.runner.caption import main as caption_main

    fifo = tmp_path / "scan.jpg"
    os.mkfifo(fifo)
    with alarm(120):
        code = caption_main(["--model", str(tmp_path / "no-such-model"), str(fifo)])
    err = capsys.readouterr().err
    line = _error_line(err)
    assert code == 2 and str(fifo) in line and "FIFO" in line


def test_caption_cli_bad_dataset_csv_named_before_the_model_loads(tmp_path, capsys):
    from medcap_utils.runner.caption import main as caption_main

    root = make_split(tmp_path / "d", captions=_csv_bytes("ID,Caption", caption_rows() + [f"{IDS[0]},again"]))
    code = caption_main(["--model", str(tmp_path / "no-such-model"), "--data-dir", str(root), "--split", "test",
                         "--runs-root", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2 and f"{root / 'test_captions.csv'}: line 10:" in _error_line(err)


# --- half-written cache state ---------------------------------------------------------------------------

@pytest.mark.parametrize("damaged", ["meta.json", "images.npy"])
def test_half_written_cache_is_rebuilt(tmp_path, damaged):
    root = make_split(tmp_path / "d")
    first = cache_mod.get_image_cache(root, "test", 8, cache_dir=tmp_path / "cache")
    expected = np.array(first.images)
    target = first.path / damaged
    target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    del first
    with pytest.warns(UserWarning, match="rebuilding the damaged image cache"):
        again = cache_mod.get_image_cache(root, "test", 8, cache_dir=tmp_path / "cache")
    assert again.ids == IDS and np.array_equal(np.asarray(again.images), expected)
    assert json.loads((again.path / "meta.json").read_text())["ids"] == IDS


def test_full_disk_is_a_named_error_before_the_memory_map(tmp_path, monkeypatch):
    from medcap_utils import atomic

    root = make_split(tmp_path / "d")
    monkeypatch.setattr(atomic, "free_bytes", lambda path: 5_000)
    out = cache_mod.cache_path(root, "test", 16, tmp_path / "cache")
    with pytest.raises(atomic.DiskFullError) as error:
        cache_mod.get_image_cache(root, "test", 16, cache_dir=tmp_path / "cache")
    assert error.value.needed == 8 * 16 * 16 * 3 + 4096 and error.value.path == out / "images.npy"
    assert str(out / "images.npy") in str(error.value) and "5,000 bytes" in str(error.value)
    assert not out.exists() and list((tmp_path / "cache").iterdir()) == []  # nothing half-built left


# --- evaluate: the ground truth goes through the same reader; outputs are atomic -------------------------

def _run_file(tmp_path: Path, task: str) -> Path:
    from medcap_utils.evaluation.runfiles import write_caption_run, write_concept_run

    if task == "captions":
        return write_caption_run(tmp_path / "run.csv", {i: "axial ct" for i in IDS})
    return write_concept_run(tmp_path / "run.csv", {i: ["C0040405"] for i in IDS})


GT_CASES = [
    ("captions_duplicate_id", "captions", "--gt", _csv_bytes("ID,Caption", caption_rows() + [f"{IDS[2]},Other"]), 10),
    ("captions_unterminated_quote_near_end", "captions", "--gt", UNCLOSED_NEAR_END, 8),  # scored 7 of 8 images
    ("captions_non_utf8", "captions", "--gt",
     _csv_bytes("ID,Caption", _with(caption_rows(), 5, IDS[5].encode() + b",Caf\xe9")), 7),
    ("captions_empty_reference", "captions", "--gt",
     _csv_bytes("ID,Caption", _with(caption_rows(), 1, f"{IDS[1]},")), 3),
    ("concepts_duplicate_id", "concepts", "--gt", _csv_bytes("ID,CUIs", concept_rows() + [f"{IDS[0]},C0024485"]), 10),
    ("concepts_manual_duplicate_id", "concepts", "--gt-manual",
     _csv_bytes("ID,CUIs", concept_rows() + [f"{IDS[0]},C0024485"]), 10),
]


@pytest.mark.parametrize("case,task,flag,data,line", GT_CASES, ids=[c[0] for c in GT_CASES])
def test_evaluate_bad_ground_truth_exits_2_naming_file_and_line(tmp_path, capsys, case, task, flag, data, line):
    from medcap_utils.evaluation.evaluate import main as evaluate_main

    bad = tmp_path / "bad.csv"
    bad.write_bytes(data)
    good = tmp_path / "good.csv"
    good.write_bytes(_csv_bytes("ID,CUIs", concept_rows()))
    argv = [task, "--gt", str(bad if flag == "--gt" else good), "--pred", str(_run_file(tmp_path, task)),
            "--bootstrap", "0", "--out", str(tmp_path / "m.json")]
    if flag == "--gt-manual":
        argv += ["--gt-manual", str(bad)]
    if task == "captions":
        argv += ["--metrics", "rouge1"]
    code = evaluate_main(argv)
    err = capsys.readouterr().err
    assert code == 2 and f"{bad}: line {line}:" in _error_line(err)
    assert not (tmp_path / "m.json").exists()


def test_evaluate_missing_ground_truth_exits_2(tmp_path, capsys):
    from medcap_utils.evaluation.evaluate import main as evaluate_main

    code = evaluate_main(["captions", "--gt", str(tmp_path / "nothing.csv"),
                          "--pred", str(_run_file(tmp_path, "captions")),
                          "--metrics", "rouge1", "--bootstrap", "0", "--out", str(tmp_path / "m.json")])
    err = capsys.readouterr().err
    assert code == 2 and "nothing.csv" in _error_line(err)


def test_evaluate_outputs_are_whole_or_absent_when_writes_fail(tmp_path):
    """A file-size limit makes every write past 200 bytes fail, like a full disk: no truncated output."""
    gt = tmp_path / "gt.csv"
    gt.write_bytes(_csv_bytes("ID,Caption", caption_rows()))
    run = _run_file(tmp_path, "captions")
    out = tmp_path / "m.json"
    out.write_text('{"old": true}')
    code = ("import resource, signal, sys\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (200, 200))\n"
            "from medcap_utils.evaluation.evaluate import main\n"
            f"sys.exit(main(['captions', '--gt', {str(gt)!r}, '--pred', {str(run)!r}, '--metrics', 'rouge1',"
            f" '--bootstrap', '0', '--out', {str(out)!r}]))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1"})
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and "cannot write" in proc.stderr, proc.stderr
    assert out.read_text() == '{"old": true}'
    side = tmp_path / "m"
    for name, lines in (("refs.txt", 8), ("hyps.txt", 8), ("per_image.csv", 9)):
        if (side / name).exists():  # only complete files may exist
            assert len((side / name).read_text().splitlines()) == lines, name
    assert not [p.name for p in side.glob(".*")] if side.exists() else True  # no temporary files left


def test_evaluate_images_dir_fifo_is_named_not_opened(tmp_path):
    from medcap_utils.evaluation.evaluate import image_paths_for

    images = tmp_path / "images"
    images.mkdir()
    (images / f"{IDS[0]}.jpg").write_bytes(b"jpeg bytes")
    os.mkfifo(images / f"{IDS[1]}.jpg")
    with pytest.raises(FileNotFoundError, match=f"{IDS[1]}.jpg is a FIFO, not a regular file"):
        image_paths_for(IDS[:2], images)


@pytest.mark.parametrize("caption", ["", "   "], ids=["empty", "whitespace"])
def test_empty_caption_never_becomes_a_training_target(tmp_path, caption):
    from medcap_utils.training.captioning_data import caption_dataset

    root = make_split(tmp_path / "d",
                      captions=_csv_bytes("ID,Caption", _with(caption_rows(), 2, f'{IDS[2]},"{caption}"')))
    with pytest.raises(MalformedCSVError) as error:
        caption_dataset(root, "test", 8, cache_dir=tmp_path / "cache")
    assert (error.value.kind, error.value.line) == ("empty_caption", 4) and IDS[2] in str(error.value)
    assert not (tmp_path / "cache").exists()  # refused before any image is decoded
