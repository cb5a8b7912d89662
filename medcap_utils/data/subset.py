"""A small ROCOv2 subset in the official on-disk layout, sized for one free Colab T4.

``subset(out_dir, n_per_split, seed, source)`` picks N images per split and writes
``{split}_captions.csv``, the concept CSVs the source has, ``cui_mapping.csv`` (if the source has
it), images as ``{split}/{ID}.jpg``, a ``subset.json`` manifest (source, seed, IDs, sha256 of every
file, what is missing and why) and a ``SUBSET_README.md``. ``python -m medcap_utils.data check``
then validates it like any ROCOv2 folder. Used by notebook 00 (``source: hf`` in the rocov2 profile)
and by ``python -m medcap_utils.data subset``.

Sources
-------
* ``"eltorio/ROCOv2-radiology"`` (default), or a local folder in that dataset's parquet layout, read
  with ``datasets.load_dataset(source, split=..., streaming=True)``: nothing is downloaded in full.
  Selection = ``IterableDataset.shuffle(seed, buffer_size)`` then the first N rows: deterministic for
  a seed and a fixed set of parquet shards (pin ``revision`` for the hub). The shard order is
  shuffled and rows are mixed within a buffer, so a subset comes from the first few shards of the
  shuffled order (a cluster sample), not from a uniform draw over the split; a uniform draw would
  have to stream every image. Download per split is about (N + buffer_size) rows.
* A folder with the Zenodo files (``{split}_captions.csv``, ...): N IDs drawn uniformly with
  ``numpy.random.default_rng([seed, split index])``; only the chosen images are read out of
  ``{split}_images.zip`` (or the ``{split}/`` folder). CSV rows are copied field for field.

What the Hugging Face copy holds (its generation notebook ``generate.ipynb``, in the dataset repo
and in github.com/sctg-development/ROCOv2-radiology; columns ``image, image_id, caption, cui``):
* ``cui`` is ``{split}_concepts_manual.csv`` (modality, plus X-ray body region and directionality),
  split on ``;`` after ``pandas.read_csv``, so an image without manual concepts holds ``["nan"]``.
  It is written here as ``{split}_concepts_manual.csv`` ("nan" dropped, counted in the manifest).
* It lacks ``{split}_concepts.csv`` (the MedCAT concepts of the primary concept-detection score),
  ``cui_mapping.csv`` (CUI names) and ``license_information.csv`` (per-image licence). They are not
  written and are listed under ``missing`` in ``subset.json``; ``check`` reports them as warnings
  for such a subset instead of failing. ``split_frame`` then fills ``cuis`` from the manual concepts
  and says so in ``frame.attrs["concepts_source"]`` (the modality comes from them too), so notebooks
  05 and 07 train on the concepts the source has, labelled; notebook 08 scores concept runs against
  them and notes it on every row.
* Images were re-encoded from the Zenodo JPEGs to PNG (lossless from the decoded JPEG). The bytes
  are kept as they are, under the ``{ID}.jpg`` name the readers look up (they decode by content);
  ``subset.json`` counts the formats.

Nothing half-written: the subset is built in a hidden sibling folder that is renamed into place only
when complete; any error (stream cut, split too small, source unreachable) removes it. A crash that
skips the clean-up leaves a folder whose ``subset.json`` says ``"complete": false``, which ``check``
rejects; ``check`` also re-hashes every file listed in the manifest.

Default sizes for one free Colab T4 (:data:`COLAB_T4_SIZES`, 600 / 150 / 150) — an ESTIMATE, not a
measurement. H100 anchors (reference.md): BLIP-base fp32 batch 4 trains 36 img/s, BLIP-large 20
img/s; generation (bs 64) greedy 100, beam 3 79, beam 10 57 captions/s, BLIP-large beam 4 60.
A T4 is taken as 10x slower (range 8-15x: fp16 tensor peak 65 vs 989 TFLOP/s, fp32 8.1 vs 60-67,
memory 320 GB/s vs 3.35 TB/s; spec figures as quoted by ispacesoft.com/425474.html for the T4 and
ozmarx.com/h100-vs-a100-training, deploybase.ai/articles/best-gpu-for-llm-training for the H100),
so per T4 image: base train 0.28 s, large train 0.5 s, forward-only
validation loss a third of that, greedy 0.10 s, base beam 5 ~0.14 s, large beam 5 ~0.18 s.
* notebook 02, 2Q2T BLIP-base 15 epochs: 15 x (600 x 0.28 + 150 x 0.093 + 150 x 0.10) = 2,955 s;
  UIT-Oggy BLIP-large 2 epochs: 2 x (600 x 0.5 + 150 x 0.167 + 150 x 0.18) = 704 s; test captions
  150 x (0.10 + 0.18) = 42 s; total ~3,700 s = ~62 min (49 min at 8x, 93 min at 15x).
* notebook 03, three BLIP-large variants x 2 epochs: 3 x 2 x 600 x 0.5 = 1,800 s + 4 x 150 x 0.18
  = 108 s: ~32 min (hub comparison models not counted).
* notebook 04, five decodings (greedy, beam 3/4/5/10) of base, 0.10 + 0.127 + ~0.14 + ~0.15 + 0.175
  = 0.70 s per image, and of large (beam 4: 60 vs ~70 captions/s for base, so x1.17) ~0.82 s:
  150 x 1.52 = 228 s, ~4 min (BERTScore not counted).
The H100 runs batch 4 in fp32 far below its peak, so the T4 may lose less than 8x there and these
times are likely upper estimates; fp16 autocast on a T4 is about 1.8x faster than fp32
(measured on a Colab T4: 57 vs 31 min, blog.ceshine.net/post/apex-t4-p100). Download from the hub:
about (N + 1,000) rows per split at ~225 KB (train, 13.46 GB / 59,962 rows on its card) / ~260 KB
(valid, test) per row = ~1 GB; the subset itself is ~0.2 GB on disk.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from itertools import islice
from pathlib import Path

import numpy as np

from medcap_utils.model_files import file_sha256
from medcap_utils.data.files import read_image_bytes
from medcap_utils.data.rocov2 import SPLITS, image_source, split_files
from medcap_utils.data.subset_files import (MANIFEST, README, SubsetError, copy_licence_rows, hash_files, image_bytes,
                                            image_format, is_data_file, move_into_place, raw_rows, readme_text,
                                            write_csv)

HF_ID = "eltorio/ROCOv2-radiology"
#: ROCOv2 split -> split name of the Hugging Face copy
HF_SPLITS = {"train": "train", "valid": "validation", "test": "test"}
#: Default images per split for one free Colab T4 (module docstring: the estimate behind it).
COLAB_T4_SIZES = {"train": 600, "valid": 150, "test": 150}
FORMAT = "medcap-rocov2-subset/1"
# pandas.read_csv turns an empty CUIs field into NaN and str(NaN) is "nan": the HF copy's
# generation notebook stored that string as a CUI for images without manual concepts.
NAN_CUI = "nan"

HF_LACKS = {
    "{split}_concepts.csv": "the Hugging Face copy has one CUI column, `cui`, made from "
                            "{split}_concepts_manual.csv; the MedCAT concepts (concepts.csv) are not in it",
    "cui_mapping.csv": "the Hugging Face copy carries no CUI names",
    "license_information.csv": "the Hugging Face copy carries no per-image licence "
                               "(its card states CC BY-NC-SA 4.0 for the dataset)",
}


# ---------------------------------------------------------------------------------------------
# public API


def subset(out_dir, n_per_split=None, seed: int = 0, source: str = HF_ID, *, revision: str | None = None,
           buffer_size: int = 1000, overwrite: bool = False) -> dict:
    """Write N images per split of ROCOv2 to ``out_dir`` in the official layout; returns the manifest.

    ``n_per_split``: an int for every split, a dict ``{"train": n, "valid": n, "test": n}`` (only
    the splits named are written), or None for :data:`COLAB_T4_SIZES`. ``source``: the hub id
    (default), a local folder in the hub's parquet layout, or a folder with the Zenodo files.
    ``revision`` pins the hub commit (recommended: the selection depends on the shard list).
    ``buffer_size``: rows mixed by the streaming shuffle. An existing non-empty ``out_dir`` is only
    replaced with ``overwrite=True``, and only once the new subset is complete.

    From the Hugging Face copy, ``{split}_concepts_manual.csv`` comes from its ``cui`` column and
    ``{split}_concepts.csv``, ``cui_mapping.csv`` and ``license_information.csv`` are absent: they
    are named under ``missing`` in ``subset.json`` and in ``SUBSET_README.md``, never faked.
    Raises :class:`SubsetError` (split too small, source unreachable, stream cut) and leaves no
    output folder behind.
    """
    out = Path(out_dir)
    sizes = _sizes(n_per_split)
    source = str(Path(source).expanduser()) if str(source).startswith("~") else source
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise SubsetError(f"{out} exists and is not empty; pass overwrite=True (--overwrite) to replace it")
    kind = _source_kind(source)
    tmp = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        # Written first and rewritten last: a folder left by a crash says it is incomplete.
        (tmp / MANIFEST).write_text(json.dumps({"format": FORMAT, "complete": False}) + "\n", encoding="utf-8")
        if kind == "zenodo":
            manifest = _from_zenodo(tmp, Path(source), sizes, seed)
        else:
            manifest = _from_hf(tmp, source, sizes, seed, revision, buffer_size)
        manifest.update({"format": FORMAT, "seed": seed, "n_per_split": sizes})
        (tmp / README).write_text(readme_text(manifest), encoding="utf-8")
        manifest["files"] = hash_files(tmp)
        manifest["complete"] = True
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        move_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def verify_manifest(root) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """``(problems, declared_missing)`` for a folder with ``subset.json`` (used by ``check``).

    ``problems``: ``(where, detail)`` for an incomplete subset, a listed file that is gone or whose
    sha256 changed, and files written beside the data that the manifest does not list.
    ``declared_missing``: ``{file name: reason}`` of the files the source did not have.
    """
    root = Path(root)
    try:
        manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        return [(MANIFEST, f"unreadable: {error}")], {}
    if not manifest.get("complete"):
        return [(MANIFEST, "the subset writer did not finish (complete is false); write the subset again")], {}
    problems = []
    listed = manifest.get("files", {})
    for rel, digest in sorted(listed.items()):
        path = root / rel
        if not path.is_file():
            problems.append((rel, "listed in subset.json but not found"))
        elif file_sha256(path) != digest:
            problems.append((rel, "sha256 differs from subset.json (changed or truncated)"))
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and rel != MANIFEST and rel not in listed and is_data_file(rel):
            problems.append((rel, "not listed in subset.json"))
    return problems, dict(manifest.get("missing", {}))


# ---------------------------------------------------------------------------------------------
# sources


def _sizes(n_per_split) -> dict[str, int]:
    if n_per_split is None:
        sizes = dict(COLAB_T4_SIZES)
    elif isinstance(n_per_split, int):
        sizes = {split: n_per_split for split in SPLITS}
    else:
        unknown = set(n_per_split) - set(SPLITS)
        if unknown:
            raise SubsetError(f"unknown split(s) {sorted(unknown)}; ROCOv2 splits are {list(SPLITS)}")
        sizes = {split: int(n_per_split[split]) for split in SPLITS if split in n_per_split}
    for split, n in sizes.items():
        if n < 1:
            raise SubsetError(f"split {split!r}: asked for {n} images; ask for at least 1")
    return sizes


def _source_kind(source) -> str:
    path = Path(str(source))
    if path.is_dir():
        return "zenodo" if any((path / f"{s}_captions.csv").exists() for s in SPLITS) else "hf-folder"
    if str(source).startswith((".", "/", "~")) or os.sep in str(source).strip("/").split("/", 1)[-1]:
        raise SubsetError(f"source folder {source} not found")
    return "hf-hub"


def _open_hf_split(source: str, hf_split: str, revision: str | None):
    """The streaming split with raw image bytes (``{"bytes", "path"}``), and its size if the card says."""
    import datasets

    try:
        stream = datasets.load_dataset(source, split=hf_split, streaming=True, revision=revision)
    except Exception as error:  # ConnectionError offline, FileNotFoundError/ValueError for a bad id or split
        raise SubsetError(
            f"cannot open split {hf_split!r} of {source!r} with datasets (streaming): "
            f"{type(error).__name__}: {error}. Fix: go online (unset HF_HUB_OFFLINE / HF_DATASETS_OFFLINE) "
            f"and check the id, or pass source=<folder> with the Zenodo files (record 8333645) or a local "
            f"copy of the {HF_ID} parquet files") from error
    info = (stream.info.splits or {}).get(hf_split) if stream.info is not None else None
    size = info.num_examples if info is not None and info.num_examples else None
    return stream.cast_column("image", datasets.Image(decode=False)), size


def _from_hf(tmp: Path, source: str, sizes: dict, seed: int, revision, buffer_size: int) -> dict:
    kind = _source_kind(source)
    rows_by_split, formats, nan_cuis, empty_captions = {}, {}, 0, 0
    for split, n in sizes.items():
        hf_split = HF_SPLITS[split]
        stream, size = _open_hf_split(source, hf_split, revision)
        if size is not None and size < n:
            raise SubsetError(f"split {split!r} ({hf_split!r} in {source}) has {size} images; {n} asked")
        (tmp / split).mkdir()
        rows, seen = [], set()
        try:
            for example in islice(stream.shuffle(seed=seed, buffer_size=buffer_size), n):
                image_id = str(example["image_id"])
                if image_id in seen:
                    raise SubsetError(f"split {split!r}: image_id {image_id} appears twice in {source}")
                seen.add(image_id)
                data = image_bytes(example["image"], image_id)
                formats[image_format(data)] = formats.get(image_format(data), 0) + 1
                (tmp / split / f"{image_id}.jpg").write_bytes(data)
                cuis = [c.strip() for c in (example.get("cui") or []) if c and c.strip()]
                nan_cuis += sum(c == NAN_CUI for c in cuis)
                caption = example.get("caption")
                empty_captions += caption is None
                rows.append((image_id, "" if caption is None else caption, [c for c in cuis if c != NAN_CUI]))
        except SubsetError:
            raise
        except Exception as error:  # network drop, corrupt shard, ...: name where the stream stopped
            raise SubsetError(f"split {split!r}: the stream from {source} stopped after {len(rows)} of {n} "
                              f"rows: {type(error).__name__}: {error}. Nothing was written; run again") from error
        if len(rows) < n:
            raise SubsetError(f"split {split!r} ({hf_split!r} in {source}) has {len(rows)} images; {n} asked")
        rows.sort()
        rows_by_split[split] = [r[0] for r in rows]
        write_csv(tmp / f"{split}_captions.csv", ("ID", "Caption"), [(i, c) for i, c, _ in rows])
        write_csv(tmp / f"{split}_concepts_manual.csv", ("ID", "CUIs"), [(i, ";".join(c)) for i, _, c in rows])
    resolved = _hub_commit(source, revision) if kind == "hf-hub" else None
    missing = {name.format(split=split): reason.format(split=split)
               for name, reason in HF_LACKS.items() for split in (sizes if "{split}" in name else [None])}
    return {
        "source": {"kind": kind, "id": str(source), "revision": revision, "commit": resolved,
                   "buffer_size": buffer_size,
                   "selection": f"datasets streaming shuffle(seed={seed}, buffer_size={buffer_size}), "
                                "first N rows; written sorted by ID"},
        "ids": rows_by_split,
        "missing": missing,
        "image_formats": formats,
        "notes": [
            "{split}_concepts_manual.csv is the HF `cui` column, which the HF generation notebook built "
            "from the Zenodo {split}_concepts_manual.csv",
            f"'nan' CUIs dropped (pandas NaN of an empty CUIs field): {nan_cuis}",
            f"captions that were null in the source (written empty, check reports them): {empty_captions}",
            "images keep the source bytes (the HF copy stores PNG) under {ID}.jpg, the name the readers use",
        ],
    }


def _hub_commit(source: str, revision: str | None) -> str | None:
    """The hub commit that was read, so a subset can be redrawn from the same shards (None if unknown)."""
    try:
        from huggingface_hub import HfApi

        return HfApi().dataset_info(source, revision=revision).sha
    except Exception:  # informational only: the subset itself is already complete
        return None


def _from_zenodo(tmp: Path, root: Path, sizes: dict, seed: int) -> dict:
    ids_by_split, missing, formats = {}, {}, {}
    for split, n in sizes.items():
        files = split_files(root, split)
        if not files["captions"].exists():
            raise SubsetError(f"split {split!r}: {files['captions']} not found in the source folder")
        captions = raw_rows(files["captions"], ("ID", "Caption"))
        ids = sorted(captions)
        if len(ids) < n:
            raise SubsetError(f"split {split!r} ({files['captions']}) has {len(ids)} images; {n} asked")
        rng = np.random.default_rng([seed, SPLITS.index(split)])
        chosen = sorted(ids[i] for i in rng.choice(len(ids), size=n, replace=False))
        (tmp / split).mkdir()
        for image_id in chosen:  # only these members are read from the zip
            data = read_image_bytes(image_source(root, split, image_id))
            formats[image_format(data)] = formats.get(image_format(data), 0) + 1
            (tmp / split / f"{image_id}.jpg").write_bytes(data)
        write_csv(tmp / files["captions"].name, ("ID", "Caption"), [(i, captions[i]) for i in chosen])
        for key in ("concepts", "concepts_manual"):
            if files[key].exists():
                table = raw_rows(files[key], ("ID", "CUIs"))
                write_csv(tmp / files[key].name, ("ID", "CUIs"), [(i, table[i]) for i in chosen if i in table])
            else:
                missing[files[key].name] = "not in the source folder"
        ids_by_split[split] = chosen
    mapping = root / "cui_mapping.csv"
    if mapping.exists():
        shutil.copyfile(mapping, tmp / mapping.name)
    else:
        missing[mapping.name] = "not in the source folder"
    copy_licence_rows(root, tmp, ids_by_split, missing)
    return {
        "source": {"kind": "zenodo", "id": str(root.resolve()),
                   "selection": f"numpy default_rng([seed={seed}, split index]).choice without replacement "
                                "over the sorted caption IDs; written sorted by ID"},
        "ids": ids_by_split,
        "missing": missing,
        "image_formats": formats,
        "notes": ["CSV fields copied unchanged from the source files"],
    }
