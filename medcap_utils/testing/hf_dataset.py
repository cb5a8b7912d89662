"""A local stand-in of the Hugging Face dataset ``eltorio/ROCOv2-radiology``, for tests without the hub.

``write_hf_dataset(demo_dir, out_dir)`` turns a dataset in the official ROCOv2 layout (the demo of
``python -m medcap_utils.data synth``) into the hub copy's form, the way its generation notebook
(``generate.ipynb`` in the dataset repository) built it:

* columns ``image`` (``datasets.Image``: struct of ``bytes``/``path``, the JPEG re-encoded as PNG),
  ``image_id``, ``caption`` and ``cui`` (list of strings);
* captions and CUIs read with ``pandas.read_csv`` from ``{split}_captions.csv`` and
  ``{split}_concepts_manual.csv`` (not ``concepts.csv``), ``cui`` = ``str(field).split(";")`` — so
  an empty field becomes ``["nan"]`` as on the hub;
* parquet shards ``data/{train,validation,test}-NNNNN-of-NNNNN.parquet`` and a ``README.md`` whose
  YAML header names the features, split sizes and data files, as on the hub.

``datasets.load_dataset(out_dir, split="validation", streaming=True)`` then reads it exactly as it
reads the hub id, so :func:`medcap_utils.data.subset.subset` runs the same code path on both.
"""
from __future__ import annotations

import io
from pathlib import Path

SPLIT_NAMES = {"train": "train", "valid": "validation", "test": "test"}


def _png(jpeg_path: Path) -> bytes:
    from PIL import Image

    with Image.open(jpeg_path) as image:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()


def _card(counts: dict[str, int], sizes: dict[str, int]) -> str:
    splits = "".join(f"  - name: {name}\n    num_bytes: {sizes[name]}\n    num_examples: {counts[name]}\n"
                     for name in counts)
    files = "".join(f"  - split: {name}\n    path: data/{name}-*\n" for name in counts)
    return ("---\ndataset_info:\n  features:\n  - name: image\n    dtype: image\n  - name: image_id\n"
            "    dtype: string\n  - name: caption\n    dtype: string\n  - name: cui\n    sequence: string\n"
            f"  splits:\n{splits}configs:\n- config_name: default\n  data_files:\n{files}---\n"
            "# ROCOv2 stand-in\n\nWritten by medcap_utils.testing.hf_dataset from a dataset in the ROCOv2 "
            "layout, in the schema of eltorio/ROCOv2-radiology. Not real data.\n")


def write_hf_dataset(demo_dir, out_dir, shards: dict[str, int] | None = None) -> Path:
    """Write ``demo_dir`` (ROCOv2 layout, images in ``{split}/``) as the hub copy's parquet folder.

    ``shards``: parquet files per hub split (default: train 3, others 1) so the streaming shuffle
    also shuffles shard order, as with the hub's 27 train shards. Returns ``out_dir``."""
    import datasets
    import pandas as pd

    demo, out = Path(demo_dir), Path(out_dir)
    shards = {"train": 3, "validation": 1, "test": 1, **(shards or {})}
    features = datasets.Features({"image": datasets.Image(), "image_id": datasets.Value("string"),
                                  "caption": datasets.Value("string"),
                                  "cui": datasets.List(datasets.Value("string"))})
    (out / "data").mkdir(parents=True, exist_ok=True)
    counts, sizes = {}, {}
    for split, name in SPLIT_NAMES.items():
        # Read as the generation notebook did (pandas defaults), quirks included.
        captions = pd.read_csv(demo / f"{split}_captions.csv").rename(columns={"ID": "image_id", "Caption": "caption"})
        manual = pd.read_csv(demo / f"{split}_concepts_manual.csv")
        cuis = dict(zip(manual["ID"], manual["CUIs"]))
        table = {
            "image": [{"bytes": _png(demo / split / f"{i}.jpg"), "path": None} for i in captions["image_id"]],
            "image_id": captions["image_id"].tolist(),
            "caption": [None if pd.isna(c) else c for c in captions["caption"]],
            "cui": [str(cuis[i]).split(";") for i in captions["image_id"]],
        }
        dataset = datasets.Dataset.from_dict(table, features=features)
        n = shards[name]
        for k in range(n):
            path = out / "data" / f"{name}-{k:05d}-of-{n:05d}.parquet"
            dataset.shard(n, k, contiguous=True).to_parquet(str(path))
        counts[name] = len(dataset)
        sizes[name] = sum(p.stat().st_size for p in (out / "data").glob(f"{name}-*.parquet"))
    (out / "README.md").write_text(_card(counts, sizes), encoding="utf-8")
    return out
