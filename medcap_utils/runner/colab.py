"""Google Colab: the "Open in Colab" badge of every notebook and what its first code cell does there.

The repository and the ref the badges open are set in one place, ``pyproject.toml``: ``[project.urls]
Repository`` and the tag ``v<version>`` of ``[project] version``. ``python -m medcap_utils.runner.colab badges`` (``make
badges``) writes both into every notebook: the badge in the title cell and the setup cell, the first code cell,
before ``parameters``. ``python -m medcap_utils.runner.colab check`` exits 1 when a notebook disagrees.

The setup cell does nothing outside Colab. On Colab it clones the repository at that ref into
:data:`CLONE_DIR` (skipped when it is there) and calls :func:`setup`, which

* installs the project (``pip install -e``) with Colab's own torch, torchvision and torchaudio pinned as
  constraints, so pip never replaces Colab's CUDA build (the lock file's CPU torch is for ``make``, not Colab);
* reads the GPU and picks the training precision the way every run does
  (:func:`medcap_utils.device.resolve_mixed_precision`: bf16 on compute capability >= 8.0, fp16 below, fp32 on
  a CPU);
* offers Google Drive: mounted, the reports root (models, their checkpoints, runs, tables, figures) goes to
  ``MyDrive/medcap/<profile>``, so a training run interrupted by a disconnect resumes from its last checkpoint
  when the notebook is run again;
* chooses the profile: ``rocov2-subset`` (300/100/100 real ROCOv2 images, the hub checkpoints) with a GPU, the
  demo without; builds the dataset when it is missing (notebook 00's own steps) and, once the notebook's
  ``parameters`` cell has run, sets the profile's values for this notebook (``configs/<profile>.yaml``,
  exactly what ``make reproduce PROFILE=...`` would pass) and prints them.

``setup(notebook, profile=..., drive=False)`` or ``MEDCAP_COLAB_PROFILE`` / ``MEDCAP_COLAB_DRIVE=0`` change the
choices.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

#: where the setup cell clones the repository on Colab
CLONE_DIR = "/content/medcap"
DRIVE_MOUNT = "/content/drive"
#: folder under My Drive holding one reports root per profile
DRIVE_FOLDER = "MyDrive/medcap"
BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"
GPU_PROFILE, CPU_PROFILE = "rocov2-subset", "demo"
#: Colab's builds of these are kept (pinned as constraints while installing the project)
KEEP = ("torch", "torchvision", "torchaudio")
SETUP_TAG = "colab-setup"
_BADGE_LINE = re.compile(r"^\[!\[Open In Colab\]\([^)]*\)\]\([^)]*\)\s*$", re.M)


# ------------------------------------------------------------------------------------------ the one place
def _pyproject(root: Path | None = None) -> dict:
    from medcap_utils.paths import repo_root

    text = ((root or repo_root()) / "pyproject.toml").read_text()
    try:
        import tomllib
    except ImportError:  # Python 3.10: the two keys read line by line
        section, out = None, {"project": {"urls": {}}}
        for line in text.splitlines():
            if line.startswith("["):
                section = line.strip()
            match = re.match(r'\s*(\w+)\s*=\s*"([^"]*)"', line)
            if match and section == "[project]" and match[1] == "version":
                out["project"]["version"] = match[2]
            elif match and section == "[project.urls]":
                out["project"]["urls"][match[1]] = match[2]
        return out
    return tomllib.loads(text)


def repository(root: Path | None = None) -> str:
    """``[project.urls] Repository`` of pyproject.toml (a GitHub URL)."""
    url = _pyproject(root)["project"]["urls"]["Repository"].rstrip("/")
    if not url.startswith("https://github.com/"):
        raise ValueError(f"pyproject.toml [project.urls] Repository = {url!r}: Colab opens GitHub URLs only")
    return url.removesuffix(".git")


def ref(root: Path | None = None) -> str:
    """The tag the badges open: ``v`` + pyproject's version."""
    return "v" + _pyproject(root)["project"]["version"]


def badge_url(notebook: str, root: Path | None = None) -> str:
    """Colab's URL of ``notebooks/<notebook>.ipynb`` in the repository at :func:`ref`."""
    owner_repo = repository(root).removeprefix("https://github.com/")
    path = f"notebooks/{Path(notebook).stem}.ipynb"
    return f"https://colab.research.google.com/github/{owner_repo}/blob/{ref(root)}/{path}"


def badge(notebook: str, root: Path | None = None) -> str:
    return f"[![Open In Colab]({BADGE_IMAGE})]({badge_url(notebook, root)})"


def setup_cell_source(notebook: str, root: Path | None = None) -> str:
    """The first code cell: nothing outside Colab; there, clone at the ref and call :func:`setup`."""
    return f'''# On Google Colab only (elsewhere a no-op): clone medcap at {ref(root)}, install it (Colab's torch kept),
# pick the GPU's precision, offer Google Drive for checkpoints, choose the profile (medcap_utils/runner/colab.py)
try:
    import google.colab  # noqa: F401
except ImportError:
    pass
else:
    import os, subprocess, sys  # noqa: E401
    if not os.path.isdir("{CLONE_DIR}/.git"):
        subprocess.run(["git", "clone", "--depth", "1", "--branch", "{ref(root)}",
                        "{repository(root)}.git", "{CLONE_DIR}"], check=True)
    sys.path.insert(0, "{CLONE_DIR}")
    from medcap_utils.runner.colab import setup
    colab = setup("{Path(notebook).stem}")'''


# ------------------------------------------------------------------------------------------------ notebooks
def _source(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def with_badge(title: str, notebook: str, root: Path | None = None) -> str:
    """The title cell's text with its badge line (replaced, or added under the H1 line)."""
    line = badge(notebook, root)
    if _BADGE_LINE.search(title):
        return _BADGE_LINE.sub(lambda _: line, title, count=1)
    head, sep, rest = title.partition("\n")
    return f"{head}\n\n{line}\n" + (f"\n{rest.lstrip(chr(10))}" if rest.strip() else "")


def update_notebook(path: Path, root: Path | None = None) -> bool:
    """Write the badge and the setup cell of one notebook from pyproject.toml; True when the file changed."""
    text = path.read_text()
    nb = json.loads(text)
    cells = nb["cells"]
    cells[0]["source"] = _lines(with_badge(_source(cells[0]), path.name, root))
    setup = {"cell_type": "code", "execution_count": None, "id": "colab-setup",
             "metadata": {"tags": [SETUP_TAG]}, "outputs": [], "source": _lines(setup_cell_source(path.name, root))}
    existing = [k for k, c in enumerate(cells) if SETUP_TAG in c.get("metadata", {}).get("tags", [])]
    if existing:
        setup["id"] = cells[existing[0]].get("id", setup["id"])
        cells[existing[0]] = {**cells[existing[0]], **setup}
    else:
        first_code = next(k for k, c in enumerate(cells) if c["cell_type"] == "code")
        cells.insert(first_code, setup)
    new = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
    if new != text:
        path.write_text(new)
    return new != text


def badge_problems(notebooks: list[Path], root: Path | None = None) -> list[str]:
    """Notebooks whose badge or setup cell differ from what pyproject.toml gives, one message each."""
    problems = []
    for path in notebooks:
        cells = json.loads(path.read_text())["cells"]
        if badge(path.name, root) not in _source(cells[0]):
            problems.append(f"{path.name}: the title cell lacks {badge(path.name, root)}")
        code = [c for c in cells if c["cell_type"] == "code"]
        if not code or SETUP_TAG not in code[0].get("metadata", {}).get("tags", []):
            problems.append(f"{path.name}: the first code cell is not the `{SETUP_TAG}` cell")
        elif _source(code[0]) != setup_cell_source(path.name, root):
            problems.append(f"{path.name}: its `{SETUP_TAG}` cell differs from "
                            "medcap_utils.runner.colab.setup_cell_source")
    return problems


# ------------------------------------------------------------------------------------------------ on Colab
@dataclass
class ColabSetup:
    """What :func:`setup` decided."""

    notebook: str
    root: str
    ref: str
    installed: str  # "installed" | "already installed" | "skipped"
    restart: list[str]  # modules imported before pip replaced them: restart the runtime, run the cell again
    device: str
    capability: tuple[int, int] | None
    precision: str  # "bf16" | "fp16" | "no" (fp32), as resolve_mixed_precision("auto") gives for this device
    precision_reason: str
    profile: str  # configs/<profile>.yaml
    drive: str | None  # mounted Drive folder holding the reports root, or None
    reports: str
    data_dir: str
    data: str  # "present" | "built" | "left to notebook 00"
    parameters: dict = field(default_factory=dict)


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    print("$", " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=True, **kwargs)


def install(root: Path) -> tuple[str, list[str]]:
    """``pip install -e root`` with Colab's torch (and torchvision, torchaudio) pinned; skipped when ``medcap``
    is installed already. Returns what happened and the already imported distributions pip changed."""
    from importlib import metadata

    from medcap_utils.metrics.provenance import package_versions as _versions

    try:
        metadata.version("medcap")
        return "already installed", []
    except metadata.PackageNotFoundError:
        pass
    keep = {name: v for name, v in _versions(KEEP).items() if v}
    constraints = Path("/tmp/medcap-colab-constraints.txt")
    # a public version (2.8.0) matches Colab's local build (2.8.0+cu126): pip keeps it and fetches no other torch
    constraints.write_text("".join(f"{name}=={v.split('+')[0]}\n" for name, v in keep.items()))
    owners = metadata.packages_distributions()
    dists = {d for m in {m.split(".")[0] for m in sys.modules} for d in owners.get(m, [])}
    before = _versions(sorted(dists))
    _run([sys.executable, "-m", "pip", "install", "-q", "-e", str(root), "-c", str(constraints)])
    import importlib

    importlib.invalidate_caches()
    after = _versions(sorted(dists))
    return "installed", sorted(d for d in dists if before[d] != after[d])


def _mount_drive(drive_module, profile: str) -> Path | None:
    try:
        drive_module.mount(DRIVE_MOUNT)
    except Exception as error:  # declined or unavailable: the run stays on the runtime's disk
        print(f"Google Drive not mounted ({error}); models and checkpoints stay in the runtime and are lost "
              "when it disconnects")
        return None
    folder = Path(DRIVE_MOUNT) / DRIVE_FOLDER / profile
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _assigns(cell: str, name: str) -> bool:
    try:
        body = ast.parse(cell).body
    except SyntaxError:
        return False
    for node in body:
        targets = [node.target] if isinstance(node, ast.AnnAssign) else getattr(node, "targets", [])
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            return True
    return False


_hook = None


def apply_after_parameters(values: dict, label: str) -> bool:
    """Set ``values`` in the notebook's namespace each time a cell that assigns ``profile`` (the ``parameters``
    cell) has run. False outside IPython."""
    global _hook
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None:
        return False

    def apply(result):
        if _assigns(getattr(result.info, "raw_cell", "") or "", "profile"):
            shell.user_ns.update(values)
            print(f"{label}: " + ", ".join(f"{k}={v!r}" for k, v in values.items()))

    if _hook is not None:
        try:
            shell.events.unregister("post_run_cell", _hook)
        except ValueError:
            pass
    shell.events.register("post_run_cell", apply)
    _hook = apply
    return True


def build_data(root: Path, profile_values: dict) -> str:
    """Notebook 00's first step when the dataset is missing: synthesize the demo, or fetch the subset."""
    from medcap_utils.paths import resolve

    data = resolve(profile_values["data_dir"])
    if (data / "train_captions.csv").exists():
        return "present"
    sizes = {"n_train": profile_values["n_train"], "n_valid": profile_values["n_valid"],
             "n_test": profile_values["n_test"]}
    if profile_values["source"] == "synth":
        from medcap_utils.data.synth import synthesize

        synthesize(data, seed=profile_values["seed"], **sizes)
    elif profile_values["source"] == "hf":
        from medcap_utils.data.subset import subset

        subset(data, {split: sizes[f"n_{split}"] for split in ("train", "valid", "test")}, seed=profile_values["seed"],
               source=profile_values["hf_dataset"])
    else:
        return "left to notebook 00"
    return "built"


def setup(notebook: str, profile: str | None = None, drive: bool | None = None, root: str | Path = CLONE_DIR,
          data: bool = True) -> ColabSetup:
    """Prepare this Colab runtime for ``notebook`` (a file stem in ``notebooks/``); see the module docstring."""
    import google.colab  # noqa: F401 - this is for Colab only

    root = Path(root)
    os.chdir(root / "notebooks")  # where papermill, nbval and `make lab` run the notebooks
    os.environ["MEDCAP_ROOT"] = str(root)
    installed, restart = install(root)

    from medcap_utils.device import device_info, resolve_mixed_precision
    from medcap_utils.runner.reproduce import load_profile, notebook_parameters, numbered_notebooks, parameter_defaults

    info = device_info()
    precision = resolve_mixed_precision("auto", info, verbose=False)
    profile = profile or os.environ.get("MEDCAP_COLAB_PROFILE") or (GPU_PROFILE if info.type == "cuda" else CPU_PROFILE)
    if drive is None:
        drive = os.environ.get("MEDCAP_COLAB_DRIVE", "1") != "0"
    folder = _mount_drive(sys.modules["google.colab"].drive, profile) if drive else None
    reports = folder / "reports" if folder else root / "reports"
    os.environ["MEDCAP_REPORTS"] = str(reports)  # medcap_utils.paths.reports_root: models, checkpoints, runs

    notebooks = numbered_notebooks(root / "notebooks")
    config = load_profile(profile, root / "configs", notebooks)
    path = next(p for p in notebooks if p.stem == notebook)
    values = notebook_parameters(config, path, {})
    if config.get("defaults", {}).get("profile", "demo") != "demo":  # the hub checkpoints and the subset
        for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
            os.environ.pop(key, None)
    first = next(p for p in notebooks if p.stem.startswith("00_"))  # notebook 00 builds the data: its values
    setup_values = {**parameter_defaults(first), **notebook_parameters(config, first, {})}
    built = build_data(root, setup_values) if data and not notebook.startswith("00_") else "left to notebook 00"
    apply_after_parameters(values, f"Colab ({profile} profile, configs/{profile}.yaml) sets")
    result = ColabSetup(notebook, str(root), ref(root), installed, restart, info.describe(), info.capability,
                        precision.value, precision.reason, profile, str(folder) if folder else None, str(reports),
                        str(values.get("data_dir")), built, values)
    print(_summary(result))
    return result


def _summary(s: ColabSetup) -> str:
    lines = [f"medcap {s.ref} in {s.root} ({s.installed})",
             f"device: {s.device}; mixed_precision auto trains in {'fp32' if s.precision == 'no' else s.precision} "
             f"({s.precision_reason})",
             f"profile: {s.profile} (configs/{s.profile}.yaml); data: {s.data_dir} ({s.data})",
             f"reports, models and checkpoints: {s.reports}"
             + ("" if s.drive else " (runtime disk: lost on disconnect)")]
    if s.restart:
        lines.append(f"pip changed {', '.join(s.restart)}, already imported: Runtime > Restart session, then run "
                     "this cell again (it skips the clone and the install)")
    return "\n".join(lines)


def main(argv=None, prog: str | None = None) -> int:
    from medcap_utils.paths import repo_root
    from medcap_utils.runner.reproduce import numbered_notebooks

    parser = argparse.ArgumentParser(prog=prog or "python -m medcap_utils.runner.colab",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["badges", "check", "show"], nargs="?", default="badges",
                        help="badges (the default, so `medcap badges` writes them): write every notebook's badge "
                             "and setup cell; check: exit 1 if one differs; show: print the repository, the ref and "
                             "the badge URLs")
    args = parser.parse_args(argv)
    notebooks = numbered_notebooks(repo_root() / "notebooks")
    if args.command == "badges":
        changed = [p.name for p in notebooks if update_notebook(p)]
        print(f"{repository()} at {ref()}: {len(changed)} of {len(notebooks)} notebooks rewritten {changed}")
        return 0
    if args.command == "check":
        problems = badge_problems(notebooks)
        print("\n".join(problems) or f"{len(notebooks)} notebooks open {repository()} at {ref()} in Colab")
        return 1 if problems else 0
    print(json.dumps({"repository": repository(), "ref": ref(),
                      "badges": {p.name: badge_url(p.name) for p in notebooks}}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
