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


def reports_root() -> Path:
    """Where a run's outputs go: ``reports/`` in the repository, or ``MEDCAP_REPORTS`` (set by
    ``medcap_utils.runner.reproduce`` from a profile's ``reports:`` key, so the CI smoke run of the rocov2 profile
    never mixes its tiny stand-in models and runs with the demo's)."""
    env = os.environ.get("MEDCAP_REPORTS")
    return resolve(env) if env else repo_root() / "reports"


def reports_dir(*parts: str) -> Path:
    """``<reports root>/<parts>``, created if missing."""
    p = reports_root().joinpath(*parts)
    p.mkdir(parents=True, exist_ok=True)
    return p


def shared_dir() -> Path:
    """``../shared`` beside the repository (real ROCOv2 sample rows, seeds); may not exist."""
    return repo_root().parent / "shared"
