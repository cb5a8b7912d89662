"""ROCOv2 subsets (medcap_utils.data.subset) from the hub copy's layout and from the Zenodo files.

The hub is unreachable in tests, so ``medcap_utils.testing.hf_dataset`` writes the demo dataset in
the schema of ``eltorio/ROCOv2-radiology`` and ``subset`` reads that folder through the same
``datasets.load_dataset(..., streaming=True)`` call it uses for the hub id.
"""
from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medcap_utils.data import subset as subset_mod
from medcap_utils.data import subset_files
from medcap_utils.data.check import check_dataset
from medcap_utils.data.images import decode_rgb, open_rgb
from medcap_utils.data.rocov2 import read_captions, read_concepts
from medcap_utils.data.subset import SubsetError, subset, verify_manifest
from medcap_utils.testing.hf_dataset import write_hf_dataset

SIZES = {"train": 12, "valid": 10, "test": 5}  # valid = the whole demo split: every planted quirk is in it


@pytest.fixture(scope="module", autouse=True)
def _no_thread_shutdown_sleep():
    # datasets sleeps 5 s after every shuffled parquet stream (a guard for an Arrow thread issue at
    # interpreter exit); harmless in use, but it would triple this file's run time.
    import datasets

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(datasets.config, "SLEEP_TIME_ON_THREADS_SHUTDOWN", 0)
        yield


def _read_rows(path: Path) -> list[list[str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.reader(handle))


def _write_rows(path: Path, rows) -> None:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows(rows)


@pytest.fixture(scope="module")
def quirky_captions(sample_dir) -> list[str]:
    """Real captions with the CSV quirks: commas, quotes, unicode punctuation, leading spaces."""
    captions = [row[1] for row in _read_rows(sample_dir / "test_captions.csv")[1:]]
    picked = [c for c in captions if c != c.strip()][:3] + [c for c in captions if "“" in c or "‐" in c][:2]
    picked += [c for c in captions if "," in c and c not in picked][:3]
    assert len(picked) == 8 and any(c.startswith(" ") for c in picked) and any("“" in c for c in picked)
    return picked


@pytest.fixture(scope="module")
def demo(tmp_path_factory, quirky_captions) -> Path:
    """A 30/10/10 demo with real captions planted in every split and empty manual CUIs in valid."""
    from medcap_utils.data.synth import synthesize

    root = tmp_path_factory.mktemp("demo")
    synthesize(root, seed=0, n_train=30, n_valid=10, n_test=10)
    for split in ("train", "valid", "test"):
        rows = _read_rows(root / f"{split}_captions.csv")
        for row, caption in zip(rows[1:], quirky_captions):
            row[1] = caption
        _write_rows(root / f"{split}_captions.csv", rows)
    manual = _read_rows(root / "valid_concepts_manual.csv")
    manual[3][1] = manual[7][1] = ""  # rows 2 and 6 without manual concepts: the hub copy stores ["nan"]
    _write_rows(root / "valid_concepts_manual.csv", manual)
    return root


@pytest.fixture(scope="module")
def hf_folder(demo, tmp_path_factory) -> Path:
    return write_hf_dataset(demo, tmp_path_factory.mktemp("hf") / "ROCOv2-radiology")


@pytest.fixture(scope="module")
def hf_subset(hf_folder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("subsets") / "a"
    subset(out, SIZES, seed=0, source=str(hf_folder))
    return out


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_stand_in_has_the_hub_schema(hf_folder, demo):
    import datasets

    valid = datasets.load_dataset(str(hf_folder), split="validation", streaming=True)
    assert valid.info.splits["validation"].num_examples == 10
    assert set(valid.features) == {"image", "image_id", "caption", "cui"}
    assert isinstance(valid.features["image"], datasets.Image)
    rows = list(valid.cast_column("image", datasets.Image(decode=False)))
    assert rows[2]["cui"] == rows[6]["cui"] == ["nan"]
    assert rows[0]["cui"] == read_concepts(demo / "valid_concepts_manual.csv")["CUIs"][0]
    assert rows[0]["image"]["bytes"].startswith(b"\x89PNG")  # re-encoded as the hub's generation notebook did
    assert len(list(datasets.load_dataset(str(hf_folder), split="train", streaming=True))) == 30


def test_hf_subset_passes_check_and_names_what_is_missing(hf_subset):
    report = check_dataset(hf_subset)  # decodes every image
    assert report.ok, [str(p) for p in report.problems]
    for split, n in SIZES.items():
        assert report.counts[split] == {"captions": n, "concepts_manual": n, "images": n}
        assert not (hf_subset / f"{split}_concepts.csv").exists()
    assert sorted(w.where for w in report.warnings) == ["test_concepts.csv", "train_concepts.csv", "valid_concepts.csv"]
    manifest = json.loads((hf_subset / "subset.json").read_text(encoding="utf-8"))
    assert manifest["complete"] and manifest["seed"] == 0 and manifest["n_per_split"] == SIZES
    assert {"cui_mapping.csv", "license_information.csv", "train_concepts.csv"} <= set(manifest["missing"])
    assert not (hf_subset / "cui_mapping.csv").exists()
    assert manifest["image_formats"] == {"png": sum(SIZES.values())}
    assert "'nan' CUIs dropped (pandas NaN of an empty CUIs field): 2" in manifest["notes"]
    assert "valid_concepts.csv" in (hf_subset / "SUBSET_README.md").read_text(encoding="utf-8")
    for split, ids in manifest["ids"].items():
        assert ids == sorted(read_captions(hf_subset / f"{split}_captions.csv")["ID"]) and len(ids) == SIZES[split]


def test_same_seed_same_bytes_other_seed_other_images(hf_folder, hf_subset, tmp_path):
    subset(tmp_path / "b", SIZES, seed=0, source=str(hf_folder))
    assert _files(tmp_path / "b") == _files(hf_subset)
    subset(tmp_path / "c", SIZES, seed=1, source=str(hf_folder))
    ids = {seed: json.loads((root / "subset.json").read_text())["ids"]["train"]
           for seed, root in ((0, hf_subset), (1, tmp_path / "c"))}
    assert ids[0] != ids[1]
    assert len(set(ids[0]) | set(ids[1])) > 12  # not a reordering of the same images


def test_images_equal_the_demo_images(hf_subset, demo):
    for path in sorted(hf_subset.glob("*/*.jpg")):
        split, image_id = path.parent.name, path.stem
        written = np.asarray(decode_rgb(path.read_bytes(), str(path)))
        original = np.asarray(open_rgb(demo / split / f"{image_id}.jpg"))
        assert np.array_equal(written, original), path


def test_captions_and_manual_concepts_round_trip_exactly(hf_subset, demo, quirky_captions):
    # valid holds the whole demo split: the files must equal the demo's byte for byte
    for name in ("valid_captions.csv", "valid_concepts_manual.csv"):
        assert (hf_subset / name).read_bytes() == (demo / name).read_bytes(), name
    for split in ("train", "test"):
        demo_captions = dict(read_captions(demo / f"{split}_captions.csv").values)
        for image_id, caption in read_captions(hf_subset / f"{split}_captions.csv").values:
            assert caption == demo_captions[image_id]
    written = set(read_captions(hf_subset / "valid_captions.csv")["Caption"])
    assert set(quirky_captions) <= written


def test_csv_writer_is_byte_identical_to_the_official_files(sample_dir, tmp_path):
    for name in ("test_captions.csv", "test_concepts.csv"):
        rows = _read_rows(sample_dir / name)
        subset_files.write_csv(tmp_path / name, rows[0], rows[1:])
        assert (tmp_path / name).read_bytes() == (sample_dir / name).read_bytes()


@pytest.fixture(scope="module")
def zenodo(sample_dir, tmp_path_factory) -> Path:
    """The 93 real test rows with a tiny JPEG each, packed in test_images.zip as on Zenodo."""
    root = tmp_path_factory.mktemp("zenodo")
    for name in ("test_captions.csv", "test_concepts.csv"):
        shutil.copyfile(sample_dir / name, root / name)
    ids = [row[0] for row in _read_rows(root / "test_captions.csv")[1:]]
    with zipfile.ZipFile(root / "test_images.zip", "w") as archive:
        for k, image_id in enumerate(ids):
            buffer = io.BytesIO()
            Image.new("RGB", (16, 12), (k, 255 - k, 7)).save(buffer, "JPEG", quality=95)
            archive.writestr(f"test/{image_id}.jpg", buffer.getvalue())
    return root


def test_zenodo_subset_copies_rows_and_only_the_chosen_images(zenodo, tmp_path, monkeypatch):
    reads = []
    real_read = subset_mod.read_image_bytes
    monkeypatch.setattr(subset_mod, "read_image_bytes", lambda source: reads.append(source) or real_read(source))
    manifest = subset(tmp_path / "z", {"test": 20}, seed=3, source=str(zenodo))
    chosen = manifest["ids"]["test"]
    assert len(reads) == 20 and all(r.startswith("zip://") for r in reads)
    report = check_dataset(tmp_path / "z", splits=["test"])
    assert report.ok, [str(p) for p in report.problems]
    assert [w.where for w in report.warnings] == ["test_concepts_manual.csv"]  # not in the source
    assert {"test_concepts_manual.csv", "cui_mapping.csv", "license_information.csv"} == set(manifest["missing"])
    # every written line is the source line of that ID, quoting and spaces included
    source_lines = {line.split(",", 1)[0]: line
                    for line in (zenodo / "test_captions.csv").read_text(encoding="utf-8").splitlines()}
    written = (tmp_path / "z" / "test_captions.csv").read_text(encoding="utf-8").splitlines()
    assert written == ["ID,Caption"] + [source_lines[i] for i in chosen]
    with zipfile.ZipFile(zenodo / "test_images.zip") as archive:
        for image_id in chosen:
            assert (tmp_path / "z" / "test" / f"{image_id}.jpg").read_bytes() == archive.read(f"test/{image_id}.jpg")
    again = subset(tmp_path / "z2", {"test": 20}, seed=3, source=str(zenodo))
    other = subset(tmp_path / "z3", {"test": 20}, seed=4, source=str(zenodo))
    assert again["ids"] == manifest["ids"] and other["ids"] != manifest["ids"]


class _CutStream:
    """Wraps a streaming split so that iteration raises after ``k`` rows (a dropped connection)."""

    def __init__(self, stream, k):
        self.stream, self.k = stream, k

    def shuffle(self, **kwargs):
        def rows():
            for n, row in enumerate(self.stream.shuffle(**kwargs)):
                if n == self.k:
                    raise ConnectionError("connection reset by peer")
                yield row
        return rows()


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir())


def test_stream_cut_midway_leaves_no_folder(hf_folder, tmp_path, monkeypatch):
    real_open = subset_mod._open_hf_split

    def cut_valid(source, hf_split, revision):
        stream, size = real_open(source, hf_split, revision)
        return (_CutStream(stream, 3) if hf_split == "validation" else stream), size

    monkeypatch.setattr(subset_mod, "_open_hf_split", cut_valid)
    with pytest.raises(SubsetError, match="'valid'.*stopped after 3 of 10"):
        subset(tmp_path / "out", SIZES, seed=0, source=str(hf_folder))
    assert _leftovers(tmp_path) == []  # train was written before the cut: removed with the rest
    assert not check_dataset(tmp_path / "out").ok


def test_split_smaller_than_asked(hf_folder, tmp_path):
    with pytest.raises(SubsetError, match=r"split 'train' \('train' in .*\) has 30 images; 31 asked"):
        subset(tmp_path / "out", {"train": 31}, source=str(hf_folder))
    # without the card's split sizes the shortfall is found at the end of the stream
    bare = tmp_path / "bare"
    shutil.copytree(hf_folder / "data", bare / "data")
    with pytest.raises(SubsetError, match=r"split 'test' .* has 10 images; 11 asked"):
        subset(tmp_path / "out", {"valid": 2, "test": 11}, source=str(bare))
    assert _leftovers(tmp_path) == ["bare"]


def test_hub_id_offline_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(SubsetError) as error:
        subset(tmp_path / "out", 2, source="eltorio/ROCOv2-radiology")
    message = str(error.value)
    assert "'eltorio/ROCOv2-radiology'" in message and "HF_HUB_OFFLINE" in message and "Zenodo" in message
    assert _leftovers(tmp_path) == []


def test_check_rejects_an_unfinished_or_altered_subset(hf_subset, tmp_path):
    unfinished = tmp_path / "unfinished"
    shutil.copytree(hf_subset, unfinished)
    manifest = json.loads((unfinished / "subset.json").read_text())
    (unfinished / "subset.json").write_text(json.dumps({**manifest, "complete": False}))
    report = check_dataset(unfinished, decode=False)
    # an unfinished manifest vouches for nothing: the concept files it would declare missing count too
    assert [p.kind for p in report.problems] == ["subset_manifest"] + ["missing_file"] * 3

    # the last test row dropped everywhere: consistent on its own, but not the subset that was written
    cut = tmp_path / "cut"
    shutil.copytree(hf_subset, cut)
    last = manifest["ids"]["test"][-1]
    for name in ("test_captions.csv", "test_concepts_manual.csv"):
        _write_rows(cut / name, [r for r in _read_rows(cut / name) if r[0] != last])
    (cut / "test" / f"{last}.jpg").unlink()
    problems, _ = verify_manifest(cut)
    assert sorted(where for where, _ in problems) == sorted(
        ["test_captions.csv", "test_concepts_manual.csv", f"test/{last}.jpg"])
    report = check_dataset(cut, decode=False)
    assert {p.kind for p in report.problems} == {"subset_manifest"}


def test_existing_output_is_replaced_only_when_asked(zenodo, tmp_path):
    out = tmp_path / "out"
    first = subset(out, {"test": 4}, seed=0, source=str(zenodo))
    with pytest.raises(SubsetError, match="overwrite"):
        subset(out, {"test": 5}, seed=1, source=str(zenodo))
    with pytest.raises(SubsetError, match="has 93 images; 94 asked"):
        subset(out, {"test": 94}, source=str(zenodo), overwrite=True)
    assert json.loads((out / "subset.json").read_text())["ids"] == first["ids"]  # the old subset is intact
    subset(out, {"test": 5}, seed=1, source=str(zenodo), overwrite=True)
    assert len(json.loads((out / "subset.json").read_text())["ids"]["test"]) == 5
    assert _leftovers(tmp_path) == ["out"]


def test_cli_subset_then_check(demo, tmp_path):
    out = tmp_path / "cli"
    run = subprocess.run([sys.executable, "-m", "medcap_utils.data", "subset", "--out", str(out), "--source",
                          str(demo), "--n", "4", "--n-train", "6", "--seed", "2"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "train=6 valid=4 test=4" in run.stdout
    check = subprocess.run([sys.executable, "-m", "medcap_utils.data", "check", str(out)],
                           capture_output=True, text=True)
    assert check.returncode == 0 and "problems: none" in check.stdout, check.stdout
    bad = subprocess.run([sys.executable, "-m", "medcap_utils.data", "subset", "--out", str(tmp_path / "bad"),
                          "--source", str(demo), "--n", "11"], capture_output=True, text=True)
    assert bad.returncode == 1 and "split 'valid'" in bad.stderr and "has 10 images; 11 asked" in bad.stderr
    assert not (tmp_path / "bad").exists()
