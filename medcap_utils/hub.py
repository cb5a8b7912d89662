"""Hugging Face hub checkpoints of the rocov2 profile: which ids, where they are used, loading with clear
errors, and a command that lists or downloads them.

- :func:`profile_hub_ids` reads the ids from ``configs/<profile>.yaml`` and ``configs/recipes/*.yaml``
  (never a hand-kept list) plus the metric models that are code constants in ``medcap_utils.metrics``.
  Ids a recipe documents as not on the hub are left out with that reason (:func:`excluded_hub_ids`).
- :func:`from_pretrained` wraps ``cls.from_pretrained``: an id missing from the offline cache, or a
  truncated/corrupt cached file, becomes one :class:`HubModelError` naming the id, file, cache and fix.
- ``python -m medcap_utils.hub list|download --profile rocov2 [--ids ...]``.

Nothing here maps ids to paths: loading goes through huggingface_hub's own cache (``HF_HOME``/``HF_HUB_CACHE``).
"""
from __future__ import annotations

import argparse
import json
import re
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from medcap_utils.paths import repo_root

# org/name as the hub spells it (no spaces, one slash)
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
# Legacy ids without an organisation ("bert-base-uncased") look like any word, so they only count under
# keys whose value is a model; "demo" is the project's sentinel for "build the tiny model offline".
BARE_ID = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
MODEL_KEYS = {"model", "backbone", "encoder", "clip", "sam", "lm", "qformer_init", "clip_model", "base_model",
              "large_model", "gallery_model"}
NOT_IDS = {"demo"}
PATH_PREFIXES = ("reports/", "data/", "configs/", "notebooks/", "tests/", "medcap_utils/", "../", "./", "/", "~")
# A recipe line's own comment saying the id does not exist (msmedcap authors_code: facebook/sam-vit-big).
NOT_ON_HUB = re.compile(r"no such hub id|not a hub id|not on the hub|does not exist on the hub", re.I)
# Metric models that are code constants, not YAML values (module, constant, notebooks that score with it).
METRIC_CONSTANTS = [
    ("medcap_utils.metrics.bertscore", "OFFICIAL_MODEL", ("04_decoding_experiments", "08_evaluation")),
    ("medcap_utils.metrics.clipscore", "DEFAULT_CLIP", ("08_evaluation",)),
    ("medcap_utils.metrics.bleurt", "DEFAULT_BLEURT", ("08_evaluation",)),
]
FIX = ("on a machine with network run `make models PROFILE=rocov2` (or `python -m medcap_utils.hub download "
       "--ids {id}`, or `hf download {id}`) and use that Hugging Face cache here (HF_HOME)")


@dataclass(frozen=True)
class Use:
    """Where an id was found: repository-relative file, dotted key path, notebooks that read it."""

    file: str
    key: str
    notebooks: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{self.file}:{self.key}" + (f" -> {', '.join(self.notebooks)}" if self.notebooks else "")


def _leaves(node, path=""):
    """(dotted key path, last key, value) of every scalar in a parsed YAML document."""
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for k, v in items:
        sub = f"{path}[{k}]" if isinstance(node, list) else (f"{path}.{k}" if path else str(k))
        if isinstance(v, (dict, list)):
            yield from _leaves(v, sub)
        else:
            yield sub, str(k), v


def _looks_like_id(key: str, value, root: Path) -> bool:
    if not isinstance(value, str) or value in NOT_IDS or value.startswith(PATH_PREFIXES):
        return False
    if HUB_ID.match(value):
        return not (root / value).exists()  # a repository path such as data/rocov2 is not an id
    return key in MODEL_KEYS and bool(BARE_ID.match(value)) and not (root / value).exists()


def _not_on_hub_reason(text: str, key: str, value: str) -> str | None:
    """The comment on the ``key: value`` line when it says the id is not on the hub."""
    line = re.compile(rf"^\s*{re.escape(key)}:\s*['\"]?{re.escape(value)}['\"]?\s*#(.*)$")
    for raw in text.splitlines():
        m = line.match(raw)
        if m and NOT_ON_HUB.search(m.group(1)):
            return m.group(1).strip()
    return None


def _notebooks_reading(root: Path, recipe_name: str) -> tuple[str, ...]:
    return tuple(sorted(p.stem for p in (root / "notebooks").glob("*.ipynb") if recipe_name in p.read_text()))


def _scan(profile: str, root: Path, metrics: bool):
    found: dict[str, list[Use]] = {}
    excluded: dict[str, str] = {}
    files = [root / "configs" / f"{profile}.yaml", *sorted((root / "configs" / "recipes").glob("*.yaml"))]
    for path in files:
        text = path.read_text()
        rel = path.relative_to(root).as_posix()
        recipe_notebooks = _notebooks_reading(root, path.name) if path.parent.name == "recipes" else ()
        for dotted, key, value in _leaves(yaml.safe_load(text) or {}):
            if not _looks_like_id(key, value, root):
                continue
            reason = _not_on_hub_reason(text, key, value)
            if reason:
                excluded[value] = f"{rel}:{dotted} says: {reason}"
                continue
            top = dotted.split(".")[0]
            notebooks = recipe_notebooks or ((top,) if (root / "notebooks" / f"{top}.ipynb").exists() else ())
            found.setdefault(value, []).append(Use(rel, dotted, notebooks))
    if metrics:
        import importlib

        for module, name, notebooks in METRIC_CONSTANTS:
            value = getattr(importlib.import_module(module), name)
            found.setdefault(value, []).append(Use(module.replace(".", "/") + ".py", name, notebooks))
    return found, excluded


def profile_hub_ids(profile: str = "rocov2", root: Path | str | None = None,
                    metrics: bool = True) -> dict[str, list[Use]]:
    """Every hub id the profile and the recipes name, in order of first appearance, with where each is
    used. ``metrics``: add the metric models that are constants in ``medcap_utils.metrics`` (imported)."""
    return _scan(profile, Path(root or repo_root()), metrics)[0]


def excluded_hub_ids(profile: str = "rocov2", root: Path | str | None = None) -> dict[str, str]:
    """Ids the recipes name but document as not existing on the hub -> the recipe's own reason."""
    return _scan(profile, Path(root or repo_root()), metrics=False)[1]


# ---- the local cache ---------------------------------------------------------------------------------
def hub_cache() -> Path:
    """huggingface_hub's cache folder (``HF_HUB_CACHE``, default ``$HF_HOME/hub``), read at call time."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def repo_folder(repo_id: str, cache: Path | None = None) -> Path:
    return (cache or hub_cache()) / ("models--" + repo_id.replace("/", "--"))


def cached_snapshot(repo_id: str, cache: Path | None = None) -> Path | None:
    """The snapshot folder ``refs/main`` points at, or None when the id is not cached."""
    folder = repo_folder(repo_id, cache)
    ref = folder / "refs" / "main"
    if not ref.is_file():
        return None
    snap = folder / "snapshots" / ref.read_text().strip()
    return snap if snap.is_dir() else None


def folder_size(folder: Path) -> int:
    """Bytes of the files a snapshot (symlinks resolved, each blob once) or a plain folder holds."""
    seen, total = set(), 0
    for p in folder.rglob("*"):
        if p.is_file():
            real = p.resolve()
            if real not in seen:
                seen.add(real)
                total += real.stat().st_size
    return total


def _file_problem(path: Path) -> str | None:
    """Why a cached file cannot be read (dangling link, bad JSON, safetensors header or length), or None."""
    if path.is_symlink() and not path.exists():
        return "is a link to a missing blob"
    try:
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".safetensors":
            size = path.stat().st_size
            with path.open("rb") as f:
                head = f.read(8)
                if len(head) < 8:
                    return f"is truncated ({size} bytes, no safetensors header)"
                n = struct.unpack("<Q", head)[0]
                if n > size - 8:
                    return f"is truncated (header declares {n} bytes, file has {size})"
                header = json.loads(f.read(n))
            end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
            if 8 + n + end != size:
                return f"is truncated or padded (tensors need {8 + n + end} bytes, file has {size})"
    except (ValueError, UnicodeDecodeError, KeyError, TypeError) as err:
        return f"is corrupt ({type(err).__name__}: {str(err)[:80]})"
    return None


def diagnose(name_or_path: str, cache: Path | None = None) -> str | None:
    """A one-paragraph explanation when ``name_or_path`` cannot load from disk, else None."""
    local = Path(name_or_path).expanduser()
    if local.is_dir():
        for p in sorted(local.rglob("*")):
            problem = _file_problem(p) if p.suffix in (".json", ".safetensors") else None
            if problem:
                return (f"{local}: {p.relative_to(local)} {problem}. Fix: write the folder again "
                        f"(save_pretrained) or delete it and copy it anew.")
        return None
    cache = cache or hub_cache()
    snap = cached_snapshot(str(name_or_path), cache)
    if snap is None:
        offline = " and the hub is offline (HF_HUB_OFFLINE=1)" if _offline() else ""
        return (f"{name_or_path}: not in the local Hugging Face cache {cache}{offline}. "
                f"Fix: {FIX.format(id=name_or_path)}.")
    for p in sorted(snap.rglob("*")):
        if p.suffix in (".json", ".safetensors") or (p.is_symlink() and not p.exists()):
            problem = _file_problem(p)
            if problem:
                return (f"{name_or_path}: cached file {p.relative_to(snap)} {problem} (cache {cache}, snapshot "
                        f"{snap}). Fix: delete the corrupt snapshot (rm -rf '{repo_folder(str(name_or_path), cache)}') "
                        f"and download it again: {FIX.format(id=name_or_path)}.")
    return None


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


class HubModelError(OSError):
    """A checkpoint that is not in the local cache, or whose cached files are corrupt. An ``OSError`` so
    callers that already treat transformers' "can't load" errors as unavailable keep doing so."""


def from_pretrained(cls, name_or_path, **kwargs):
    """``cls.from_pretrained(name_or_path, **kwargs)``; a missing or corrupt checkpoint raises one
    :class:`HubModelError` that names the id (or folder), the file, the cache and the fix. A local folder
    is verified first (:func:`medcap_utils.model_files.verify_model_dir`: its recorded checksums, or the
    structure of its JSON and safetensors files), raising :class:`~medcap_utils.model_files.CorruptModelError`."""
    from medcap_utils.model_files import verify_model_dir

    name_or_path = str(name_or_path)
    if Path(name_or_path).expanduser().is_dir():  # a local folder: checksums if it has them, structure anyway
        verify_model_dir(Path(name_or_path).expanduser())
    try:
        return cls.from_pretrained(name_or_path, **kwargs)
    except Exception as err:  # transformers raises OSError, ValueError, SafetensorError, JSONDecodeError...
        cache = Path(kwargs["cache_dir"]) if kwargs.get("cache_dir") else None
        problem = diagnose(name_or_path, cache)
        if problem is None:
            raise
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
        raise HubModelError(f"{problem} ({type(err).__name__}: {first})") from err


# ---- command line ------------------------------------------------------------------------------------
# What transformers reads; TF/Flax/ONNX/OpenVINO duplicates are never fetched. Weights: safetensors, and
# .bin only for repositories that have no safetensors.
CONFIG_PATTERNS = ["*.json", "*.txt", "*.model", "*.jinja", "*.tiktoken"]
IGNORE_PATTERNS = ["onnx/*", "openvino/*", "*.onnx", "*.h5", "*.msgpack", "*.ot", "training_args.bin", "*.md"]
WEIGHT_SUFFIXES = (".safetensors", ".bin")


def human(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def download(repo_id: str) -> Path:
    """``snapshot_download`` of what transformers needs (configs, tokenizer/processor files, weights)."""
    from huggingface_hub import snapshot_download

    folder = Path(snapshot_download(repo_id, allow_patterns=CONFIG_PATTERNS + ["*.safetensors"],
                                    ignore_patterns=IGNORE_PATTERNS))
    if not any(p.name.endswith(WEIGHT_SUFFIXES) for p in folder.rglob("*")):  # an older .bin-only repository
        folder = Path(snapshot_download(repo_id, allow_patterns=CONFIG_PATTERNS + ["*.bin"],
                                        ignore_patterns=IGNORE_PATTERNS))
    return folder


def _select(profile: str, ids: list[str] | None, root: Path | None) -> dict[str, list[Use]]:
    found = profile_hub_ids(profile, root)
    return found if not ids else {i: found.get(i, []) for i in ids}


def cmd_list(args) -> int:
    total = 0
    for repo_id, uses in _select(args.profile, args.ids, args.root).items():
        snap = cached_snapshot(repo_id)
        size = folder_size(snap) if snap else 0
        total += size
        print(f"{repo_id}  {'cached ' + human(size) if snap else 'NOT CACHED'}")
        for use in uses:
            print(f"    {use}")
    for repo_id, reason in excluded_hub_ids(args.profile, args.root).items():
        print(f"{repo_id}  excluded: {reason}")
    print(f"total cached: {human(total)} in {hub_cache()}")
    return 0


def cmd_download(args) -> int:
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
    )

    total, failed = 0, []
    for repo_id in _select(args.profile, args.ids, args.root):
        try:
            folder = download(repo_id)
        except (LocalEntryNotFoundError, OfflineModeIsEnabled, HfHubHTTPError, OSError, ValueError) as err:
            reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
            if _offline():
                where = ("offline (HF_HUB_OFFLINE=1) and not cached; run with HF_HUB_OFFLINE=0 "
                         "where the hub is reachable")
            elif isinstance(err, RepositoryNotFoundError):
                where = "no such repository on the hub (or it needs `hf auth login`)"
            else:
                where = "the hub is not reachable"
            print(f"error: {repo_id}: {where}: {reason}", file=sys.stderr)
            failed.append(repo_id)
            continue
        size = folder_size(folder)
        total += size
        print(f"{repo_id}  {human(size)}  {folder}")
    print(f"total: {human(total)} in {hub_cache()}")
    if failed:
        print(f"error: {len(failed)} not downloaded: {' '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    ap = argparse.ArgumentParser(prog=prog or "python -m medcap_utils.hub", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    for name, fn in (("list", cmd_list), ("download", cmd_download)):
        p = sub.add_parser(name)
        p.add_argument("--profile", default="rocov2")
        p.add_argument("--ids", nargs="+", help="only these ids (default: every id of the profile)")
        p.add_argument("--root", type=Path, default=None, help="repository root (default: this checkout)")
        p.set_defaults(fn=fn)
    args = ap.parse_args(argv)
    try:
        return args.fn(args)
    except FileNotFoundError as err:  # an unknown --profile or --root: one line naming the file, no traceback
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
