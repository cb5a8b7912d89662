"""The ROCOv2 data layer: CSV quirks on real rows, RGB decoding, the two readers, the image cache."""
from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medcap_utils.data import cache as cache_mod
from medcap_utils.data.images import ImageDecodeError, open_rgb, to_rgb
from medcap_utils.data.rocov2 import (
    MalformedCSVError,
    load_hf_rocov2,
    load_split,
    modality_of,
    read_captions,
    read_concepts,
    split_frame,
)

# --- real rows -------------------------------------------------------------------------------------

def test_sample_captions_parse_exactly(sample_dir):
    frame = read_captions(sample_dir / "test_captions.csv")
    # An independent parser (pandas' C reader, nothing converted) must agree field for field.
    reference = pd.read_csv(sample_dir / "test_captions.csv", dtype=str, keep_default_na=False)
    assert frame["ID"].tolist() == reference["ID"].tolist()
    assert frame["Caption"].tolist() == reference["Caption"].tolist()
    assert len(frame) == 93
    by_id = dict(zip(frame["ID"], frame["Caption"]))
    assert "ROCOv2_2023_test_000077" not in by_id  # IDs are not contiguous
    assert by_id["ROCOv2_2023_test_000021"].startswith(" Computed tomography of the head")  # leading space
    assert by_id["ROCOv2_2023_test_000032"].endswith("necrosis. ")  # trailing space kept
    assert "“string of pearls”" in by_id["ROCOv2_2023_test_000011"]  # unicode quotes
    assert "day 26Follow-up" in by_id["ROCOv2_2023_test_000006"]  # run-together sentences, quoted commas
    assert "hematoma, and no extravasation" in by_id["ROCOv2_2023_test_000006"]
    assert "1—iliocostalis" in by_id["ROCOv2_2023_test_000079"]  # em dash


def test_sample_concepts_parse_exactly(sample_dir):
    frame = read_concepts(sample_dir / "test_concepts.csv")
    lines = (sample_dir / "test_concepts.csv").read_text(encoding="utf-8").splitlines()[1:]
    expected = {line.split(",")[0]: line.split(",", 1)[1].split(";") for line in lines}
    assert dict(zip(frame["ID"], frame["CUIs"])) == expected
    assert frame["CUIs"].iloc[0] == ["C0040405", "C0856747"]
    assert modality_of(frame["CUIs"].iloc[0]) == "CT"
    assert modality_of(frame["CUIs"].iloc[2]) == "Angiography"


def test_malformed_row_names_line(tmp_path):
    path = tmp_path / "x_captions.csv"
    path.write_text('ID,Caption\nA,fine\nB,"unquoted, comma",extra\n', encoding="utf-8")
    with pytest.raises(MalformedCSVError, match="line 3"):
        read_captions(path)


def test_empty_cui_list(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("ID,CUIs\nA,\nB,C0040405\n", encoding="utf-8")
    assert read_concepts(path)["CUIs"].tolist() == [[], ["C0040405"]]


# --- images --------------------------------------------------------------------------------------

def _images_in_every_mode() -> dict[str, Image.Image]:
    rgb = Image.new("RGB", (20, 10), (200, 100, 50))
    palette = rgb.convert("P", palette=Image.ADAPTIVE)
    palette.info["transparency"] = 0
    i16 = Image.fromarray(np.linspace(0, 4000, 200).astype(np.uint16).reshape(10, 20))
    i32 = Image.fromarray(np.linspace(-5, 70000, 200).astype(np.int32).reshape(10, 20))
    assert (i16.mode, i32.mode) == ("I;16", "I")
    return {"L": rgb.convert("L"), "LA": rgb.convert("LA"), "RGBA": rgb.convert("RGBA"), "P": palette,
            "CMYK": rgb.convert("CMYK"), "I;16": i16, "I": i32, "RGB": rgb}


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "CMYK", "I;16", "I", "RGB"])
def test_every_mode_becomes_rgb(mode):
    image = _images_in_every_mode()[mode]
    out = to_rgb(image)
    assert out.mode == "RGB" and out.size == (20, 10)
    array = np.asarray(out)
    if mode in ("I;16", "I"):  # high bit depth is stretched to the full 8-bit range, not clipped
        assert array.min() == 0 and array.max() == 255
        assert np.all(np.diff(array[..., 0].ravel().astype(int)) >= 0)
    if mode == "L":
        assert np.all(array[..., 0] == array[..., 1])


def test_transparent_pixels_become_black():
    image = Image.new("RGBA", (4, 4), (255, 255, 255, 0))
    assert np.asarray(to_rgb(image)).max() == 0


def test_truncated_jpeg_raises_naming_file(tmp_path):
    path = tmp_path / "ROCOv2_2023_test_000001.jpg"
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 20, 30)).save(buffer, format="JPEG")
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ImageDecodeError, match="ROCOv2_2023_test_000001.jpg"):
        open_rgb(path)
    with pytest.raises(ImageDecodeError, match="nothing.jpg"):
        open_rgb(tmp_path / "nothing.jpg")


# --- readers -------------------------------------------------------------------------------------

def make_mini_rocov2(root: Path, split: str = "test", zipped: bool = False) -> dict:
    """Three images in three PIL modes, one with an empty CUI list, IDs with a gap."""
    rows = {
        f"ROCOv2_2023_{split}_000001": (" CT of the chest, axial.", ["C0040405", "C0817096"], "L"),
        f"ROCOv2_2023_{split}_000002": ("MRI brain “T2” — sagittal ", ["C0024485"], "RGBA"),
        f"ROCOv2_2023_{split}_000004": ("Plain film", [], "CMYK"),
    }
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"{split}_captions.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["ID", "Caption"])
        writer.writerows((i, c) for i, (c, _, _) in rows.items())
    for name in ("concepts", "concepts_manual"):
        with open(root / f"{split}_{name}.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(["ID", "CUIs"])
            writer.writerows((i, ";".join(cuis)) for i, (_, cuis, _) in rows.items())
    (root / "cui_mapping.csv").write_text("CUI,Canonical name\nC0040405,X-Ray Computed Tomography\n"
                                          "C0024485,Magnetic Resonance Imaging\nC0817096,Chest\n")
    images = {}
    for k, (image_id, (_, _, mode)) in enumerate(rows.items()):
        image = Image.fromarray(np.full((24 + k, 30, 3), 40 * (k + 1), dtype=np.uint8)).convert(mode)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG" if mode in ("L", "CMYK") else "PNG")
        images[image_id] = buffer.getvalue()
    if zipped:
        with zipfile.ZipFile(root / f"{split}_images.zip", "w") as zf:
            for image_id, data in images.items():
                zf.writestr(f"{split}/{image_id}.jpg", data)
    else:
        (root / split).mkdir(exist_ok=True)
        for image_id, data in images.items():
            (root / split / f"{image_id}.jpg").write_bytes(data)
    return rows


@pytest.mark.parametrize("zipped", [False, True])
def test_load_split_folder_and_zip(tmp_path, zipped):
    rows = make_mini_rocov2(tmp_path / "rocov2", zipped=zipped)
    ds = load_split(tmp_path / "rocov2", "test")
    assert ds["id"] == list(rows)
    assert ds["caption"] == [c for c, _, _ in rows.values()]
    assert ds["cuis"] == [cuis for _, cuis, _ in rows.values()]
    assert ds["modality"] == ["CT", "MRI", None]
    image = ds[1]["image"]
    assert image.size == (30, 25)
    assert to_rgb(image).mode == "RGB"


def test_hf_reader_gives_same_representation(tmp_path):
    rows = make_mini_rocov2(tmp_path / "rocov2")
    official = load_split(tmp_path / "rocov2", "test")
    # The HF copy stores image, image_id, caption and a `cui` list; write one as local parquet.
    import datasets

    hf = datasets.Dataset.from_dict(
        {"image": [{"path": None, "bytes": (tmp_path / "rocov2" / "test" / f"{i}.jpg").read_bytes()} for i in rows],
         "image_id": list(rows), "caption": [c for c, _, _ in rows.values()],
         "cui": [cuis for _, cuis, _ in rows.values()]},
        features=datasets.Features({"image": datasets.Image(), "image_id": datasets.Value("string"),
                                    "caption": datasets.Value("string"),
                                    "cui": datasets.List(datasets.Value("string"))}))
    (tmp_path / "hf" / "data").mkdir(parents=True)
    hf.to_parquet(tmp_path / "hf" / "data" / "test-00000-of-00001.parquet")
    converted = load_hf_rocov2(str(tmp_path / "hf"), split="test")
    for column in ("id", "caption", "cuis", "modality"):
        assert converted[column] == official[column]
    assert converted["cuis_manual"] == [["C0040405", "C0817096"], ["C0024485"], []]
    assert np.array_equal(np.asarray(converted[0]["image"]), np.asarray(official[0]["image"]))


# --- image cache ---------------------------------------------------------------------------------

def test_image_cache_matches_decoding_and_is_reused(tmp_path):
    make_mini_rocov2(tmp_path / "rocov2")
    root = tmp_path / "rocov2"
    cache = cache_mod.get_image_cache(root, "test", 16, cache_dir=tmp_path / "cache")
    frame = split_frame(root, "test")
    assert cache.ids == frame["id"].tolist()
    assert cache.images.dtype == np.uint8 and cache.images.shape == (3, 16, 16, 3)
    assert isinstance(cache.images, np.memmap)
    for row, path in enumerate(frame["image_path"]):
        expected = cache_mod.resize_square(open_rgb(path), 16)
        assert np.array_equal(cache.images[row], expected)
    # Second call opens the same files rather than decoding again.
    stamp = (cache.path / "images.npy").stat().st_mtime_ns
    again = cache_mod.get_image_cache(root, "test", 16, cache_dir=tmp_path / "cache")
    assert again.path == cache.path and (again.path / "images.npy").stat().st_mtime_ns == stamp
    # Another size, or a changed source, is another cache.
    assert cache_mod.cache_path(root, "test", 32, tmp_path / "cache") != cache.path
    image_file = root / "test" / f"{frame['id'][0]}.jpg"
    image_file.write_bytes(image_file.read_bytes() + b"\0")
    assert cache_mod.cache_path(root, "test", 16, tmp_path / "cache") != cache.path


def test_cache_names_undecodable_image(tmp_path):
    make_mini_rocov2(tmp_path / "rocov2")
    bad = tmp_path / "rocov2" / "test" / "ROCOv2_2023_test_000002.jpg"
    bad.write_bytes(bad.read_bytes()[:40])
    with pytest.raises(ImageDecodeError, match="ROCOv2_2023_test_000002"):
        cache_mod.build_image_cache(tmp_path / "rocov2", "test", 16, cache_dir=tmp_path / "cache")


def test_normalize_uint8_on_device():
    import torch

    batch = torch.tensor(np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3))
    out = cache_mod.normalize_uint8(batch, mean=(0.5, 0.5, 0.5), std=(0.5, 0.25, 0.5))
    assert out.shape == (2, 3, 4, 4) and out.dtype == torch.float32
    expected = (batch.permute(0, 3, 1, 2).float() / 255 - 0.5) / torch.tensor([0.5, 0.25, 0.5]).view(1, 3, 1, 1)
    assert torch.allclose(out, expected)
    # Channels-first input gives the same result.
    assert torch.allclose(cache_mod.normalize_uint8(batch.permute(0, 3, 1, 2), (0.5,) * 3, (0.5, 0.25, 0.5)), out)
