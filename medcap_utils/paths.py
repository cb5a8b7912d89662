"""Repository-relative paths, so notebooks and commands never hard-code a site-specific path.

Used by every notebook: parameters hold paths relative to the repository root and are resolved here.
"""
from __future__ import annotations

import os
from pathlib import Path


def repo_root() -> Path:
    """The directory holding ``pyproject.toml`` (``MEDCAP_ROOT`` overrides it)."""
    env = os.environ.get("MEDCAP_ROOT")
    if env:
        return Path(env).resolve()
    for parent in [Path.cwd(), *Path.cwd().parents, *Path(__file__).resolve().parents]:
        if (parent / "pyproject.toml").exists() and (parent / "medcap_utils").is_dir():
            return parent
    return Path.cwd()


def resolve(path: str | os.PathLike) -> Path:
    """An absolute path: absolute inputs are kept, relative ones are taken from the repository root."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else repo_root() / p


def reports_dir(*parts: str) -> Path:
    """``reports/<parts>``, created if missing."""
    p = repo_root().joinpath("reports", *parts)
    p.mkdir(parents=True, exist_ok=True)
    return p


def shared_dir() -> Path:
    """``../shared`` beside the repository (real ROCOv2 sample rows, seeds); may not exist."""
    return repo_root().parent / "shared"
