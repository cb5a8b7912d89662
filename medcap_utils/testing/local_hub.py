"""A local Hugging Face cache of tiny stand-ins under the rocov2 profile's real hub ids.

``write_local_hub(hf_home)`` writes ``<hf_home>/hub/models--org--name/`` in huggingface_hub's own layout:
``blobs/<etag>`` (sha256 for weights, git blob sha1 for the rest, as the hub's etags), ``snapshots/<revision>/<file>``
as relative symlinks into ``blobs``, and ``refs/main`` holding the 40-hex revision. With
``HF_HOME=<hf_home> HF_HUB_OFFLINE=1`` the project's unchanged loaders then resolve
``from_pretrained("Salesforce/blip-image-captioning-base")`` through huggingface_hub's cache lookup:
nothing in the project maps ids to paths. Which stand-in serves which id is :data:`STAND_INS`; ids
are the ones :func:`medcap_utils.hub.profile_hub_ids` reads from the YAML files.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import zlib
from pathlib import Path

import torch

from medcap_utils.testing import stand_ins as S

# hub id -> builder writing a save_pretrained folder (see stand_ins for what each keeps of the real one)
STAND_INS = {
    "Salesforce/blip-image-captioning-base": S.build_blip,
    "Salesforce/blip-image-captioning-large": S.build_blip,
    "Salesforce/blip2-opt-2.7b": S.build_blip2_opt,
    "Salesforce/instructblip-vicuna-7b": S.build_instructblip_vicuna,
    "nlpconnect/vit-gpt2-image-captioning": S.build_vit_gpt2,
    "microsoft/resnet-50": S.build_resnet,
    "microsoft/resnet-101": S.build_resnet,
    "openai/clip-vit-large-patch14": S.build_clip_large_patch14,
    "openai/clip-vit-base-patch32": S.build_clip_base_patch32,
    "facebook/sam-vit-base": S.build_sam,
    "facebook/opt-2.7b": S.build_opt,
    "bert-base-uncased": S.build_bert,
    "microsoft/deberta-xlarge-mnli": S.build_deberta_mnli,
}
LFS_SUFFIXES = (".safetensors", ".bin")  # the hub stores these in LFS: their etag is the sha256


def not_stood_in() -> dict[str, str]:
    """Ids of the profile that get no stand-in, with the reason."""
    out = {}
    try:
        import bleurt_pytorch  # noqa: F401
    except Exception as err:  # ImportError, or its transformers-5 incompatibility (see metrics/bleurt.py)
        out["lucadiliello/BLEURT-20-D12"] = (f"bleurt-pytorch is not importable here ({type(err).__name__}), so "
                                             "BLEURT is reported unavailable before any checkpoint is read")
    return out


def default_ids() -> list[str]:
    """Every id of the rocov2 profile (YAML + metric constants) that gets a stand-in."""
    from medcap_utils.hub import profile_hub_ids

    skip = not_stood_in()
    return [i for i in profile_hub_ids("rocov2") if i not in skip]


def _etag(path: Path) -> str:
    data = path.read_bytes()
    if path.name.endswith(LFS_SUFFIXES):
        return hashlib.sha256(data).hexdigest()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # git's blob id


def write_repo(cache: Path, repo_id: str, src: Path) -> Path:
    """Move the files of folder ``src`` into ``cache`` as repository ``repo_id``; returns the snapshot folder.

    The revision is the sha1 of the (path, etag) list, so the same files give the same revision."""
    folder = cache / ("models--" + repo_id.replace("/", "--"))
    if folder.exists():
        shutil.rmtree(folder)
    (folder / "blobs").mkdir(parents=True)
    files = sorted(p for p in src.rglob("*") if p.is_file())
    etags = {p.relative_to(src).as_posix(): _etag(p) for p in files}
    revision = hashlib.sha1("\n".join(f"{k} {v}" for k, v in etags.items()).encode()).hexdigest()
    snap = folder / "snapshots" / revision
    for p in files:
        rel = p.relative_to(src).as_posix()
        blob = folder / "blobs" / etags[rel]
        if not blob.exists():
            shutil.move(str(p), blob)
            os.chmod(blob, 0o644)  # save_pretrained's temporary files can be owner-only
        link = snap / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blob, link.parent), link)  # relative, as huggingface_hub writes them
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(revision)  # no trailing newline, as the hub client writes it
    return snap


def write_local_hub(hf_home: str | Path, ids: list[str] | None = None, seed: int = 0) -> dict[str, Path]:
    """Write stand-ins for ``ids`` (default: :func:`default_ids`) into ``<hf_home>/hub``; returns
    ``{id: snapshot folder}``. Same ``seed`` -> same bytes -> same blob hashes and revisions."""
    ids = list(default_ids() if ids is None else ids)
    unknown = [i for i in ids if i not in STAND_INS]
    if unknown:
        skip = not_stood_in()
        why = "; ".join(f"{i}: {skip[i]}" if i in skip else f"{i}: no stand-in builder in "
                        f"medcap_utils.testing.local_hub.STAND_INS" for i in unknown)
        raise KeyError(f"no stand-in for {', '.join(unknown)} ({why})")
    cache = Path(hf_home) / "hub"
    cache.mkdir(parents=True, exist_ok=True)
    from transformers.utils import logging

    out = {}
    old_verbosity = logging.get_verbosity()
    logging.set_verbosity_error()  # no per-model save progress bars or backend notices
    logging.disable_progress_bar()
    try:
        with tempfile.TemporaryDirectory(dir=cache, prefix=".build-") as tmp:
            for repo_id in ids:
                src = Path(tmp) / repo_id.replace("/", "--")
                torch.manual_seed(seed * 100003 + zlib.crc32(repo_id.encode()))  # per id, reproducible
                STAND_INS[repo_id](src)
                out[repo_id] = write_repo(cache, repo_id, src)
    finally:
        logging.set_verbosity(old_verbosity)
        logging.enable_progress_bar()
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m medcap_utils.testing.local_hub HF_HOME [--ids ...] [--seed N]``."""
    import argparse
    import time

    from medcap_utils.hub import folder_size, human

    ap = argparse.ArgumentParser(prog="python -m medcap_utils.testing.local_hub", description=main.__doc__)
    ap.add_argument("hf_home", type=Path)
    ap.add_argument("--ids", nargs="+")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    start = time.perf_counter()
    snaps = write_local_hub(args.hf_home, args.ids, args.seed)
    total = 0
    for repo_id, snap in snaps.items():
        total += folder_size(snap)
        print(f"{repo_id}  {human(folder_size(snap))}")
    print(f"{len(snaps)} stand-ins, {human(total)} in {args.hf_home / 'hub'} ({time.perf_counter() - start:.1f} s)")
    for repo_id, reason in not_stood_in().items():
        print(f"not stood in: {repo_id}: {reason}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
