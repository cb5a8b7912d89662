"""Execute every numbered notebook in order with papermill and a profile's parameters.

``python -m medcap_utils.runner.reproduce --profile demo|rocov2 [--data DIR] [--only 00 01]`` is what
``make reproduce`` calls. Executed copies go to ``reports/notebooks/``; ``reports/manifest.json``
records the git commit, package versions, profile, parameters, wall time and status per notebook.
The run stops at the first failing notebook and names it and the failing cell.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from medcap_utils.atomic import atomic_write_json
from medcap_utils.paths import repo_root

PACKAGES = ("medcap", "torch", "transformers", "datasets", "accelerate", "tokenizers", "numpy", "pandas",
            "pycocoevalcap", "rouge-score", "bert-score", "papermill", "nbval")


def numbered_notebooks(directory: Path) -> list[Path]:
    """``NN_name.ipynb`` files in order (anything not starting with two digits is skipped)."""
    return sorted(p for p in directory.glob("*.ipynb") if p.name[:2].isdigit() and p.name[2] == "_")


#: Top-level keys of a profile file besides one section per notebook stem.
PROFILE_KEYS = {"defaults", "extends", "reports", "handoff"}

#: Files in ``configs/`` that are not profiles: the hand-off tables and the papers' claims.
NOT_PROFILES = {"handoff", "claims"}


def profile_names(configs: Path) -> list[str]:
    """The profiles ``configs/`` holds: every ``*.yaml`` there except :data:`NOT_PROFILES`."""
    return sorted(p.stem for p in configs.glob("*.yaml") if p.stem not in NOT_PROFILES)


def load_profile(profile: str, configs: Path, notebooks: list[Path] | None = None) -> dict:
    """``configs/<profile>.yaml``: ``defaults`` for every notebook and one section per notebook stem.

    ``extends: <other profile>`` starts from that profile and merges this file's ``defaults`` and notebook
    sections over it, key by key (the CI smoke profile is the rocov2 profile with small limits);
    ``reports: <folder>`` sends every output there instead of ``reports/``. With ``notebooks`` each file is
    checked against their ``parameters`` cells (:func:`check_profile`): a misspelt section, a key no notebook
    declares, or a value of the wrong type stops the run before any notebook starts. Numbers such as ``1e-3``
    are read as floats (:func:`medcap_utils.training.recipe.load_yaml`)."""
    from medcap_utils.training.recipe import load_yaml

    path = configs / f"{profile}.yaml"
    if not path.exists():
        known = profile_names(configs)
        raise SystemExit(f"unknown profile {profile!r}: {path} not found; profiles: {known}")
    config = load_yaml(path) or {}
    if notebooks is not None:
        check_profile(config, path, notebooks)
    parent = config.pop("extends", None)
    if parent:
        base = load_profile(parent, configs, notebooks)
        base.pop("reports", None)  # outputs never go to the parent's folder
        for key, value in config.items():
            base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
        config = base
    return config


def check_profile(config: dict, path: Path, notebooks: list[Path]) -> None:
    """SystemExit naming ``path``, the key, the expected type and the value for the first mistake of one
    profile file: an unknown top-level section, a ``defaults`` key that no notebook declares, a notebook
    section key its notebook does not declare, or a value whose type does not match the parameter's."""
    if not isinstance(config, dict):
        raise SystemExit(f"{path}: expected a mapping of sections, found {type(config).__name__}")
    stems = {p.stem: p for p in notebooks}
    unknown = set(config) - PROFILE_KEYS - set(stems)
    if unknown:
        raise SystemExit(f"{path}: unknown sections {sorted(unknown)}; notebook sections are file stems such as "
                         f"{notebooks[0].stem!r}, other keys {sorted(PROFILE_KEYS)}")
    types = {stem: parameter_types(nb) for stem, nb in stems.items()}
    for section, values in config.items():
        if section in PROFILE_KEYS - {"defaults"}:
            continue
        if not isinstance(values, dict):
            raise SystemExit(f"{path}: {section}: expected a mapping of parameters, found {values!r}")
        for key, value in values.items():
            where = f"{path}: {section}.{key}"
            declared = {stem: t[key] for stem, t in types.items() if key in t and section in ("defaults", stem)}
            if not declared:
                known = sorted(set().union(*types.values())) if section == "defaults" else sorted(types[section])
                owner = "any notebook" if section == "defaults" else stems[section].name
                raise SystemExit(f"{where}: not a parameter of {owner}; parameters: {known}")
            for stem, expected in declared.items():
                if not _matches(value, expected):
                    raise SystemExit(f"{where}: expected {expected.__name__} (parameter of {stems[stem].name}), "
                                     f"found {value!r} ({type(value).__name__})")


def _matches(value, expected: type | None) -> bool:
    """Papermill's type rule, made strict: an int fits a float parameter, a bool fits no number, a None
    default takes anything."""
    if expected is None:
        return True
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


def _parameter_assignments(notebook: Path) -> list[tuple[str, object, object]]:
    """``(name, annotation, default)`` of each top-level assignment in the cell tagged ``parameters``, parsed with
    ``ast`` (papermill's line parser gives up on comments containing ``=`` or quotes and drops those names); the
    default is the literal value, ``...`` when it is not a literal."""
    import ast

    nb = json.loads(Path(notebook).read_text())
    for cell in nb["cells"]:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            out = []
            for node in ast.parse("".join(cell["source"])).body:
                targets = [node.target] if isinstance(node, ast.AnnAssign) else getattr(node, "targets", [])
                for target in (t for t in targets if isinstance(t, ast.Name)):
                    try:
                        default = ast.literal_eval(node.value) if node.value is not None else None
                    except (ValueError, TypeError):
                        default = ...  # not a literal: type unknown, any value fits
                    out.append((target.id, getattr(node, "annotation", None), default))
            return out
    return []


def parameter_types(notebook: Path) -> dict[str, type | None]:
    """``name -> type`` of the ``parameters`` cell: the annotation (``epochs: int = 0``) or, without one, the
    default's type; None when the default is None (any value fits)."""
    import ast
    import builtins

    out = {}
    for name, annotation, default in _parameter_assignments(notebook):
        typ = getattr(builtins, annotation.id, None) if isinstance(annotation, ast.Name) else None
        if default is None or default is ...:
            typ = None
        elif not isinstance(typ, type):
            typ = type(default)
        out[name] = typ
    return out


def declared_parameters(notebook: Path) -> list[str]:
    """Names assigned at top level of the cell tagged ``parameters``."""
    return [name for name, _, _ in _parameter_assignments(notebook)]


def parameter_defaults(notebook: Path) -> dict:
    """``name -> default`` of the ``parameters`` cell (``...`` for a value that is not a literal)."""
    return {name: default for name, _, default in _parameter_assignments(notebook)}


def notebook_parameters(config: dict, notebook: Path, overrides: dict) -> dict:
    """Defaults, then the notebook's own section, then command-line overrides — restricted to the
    parameters the notebook declares so a typo in a YAML file fails loudly instead of being ignored."""
    declared = set(declared_parameters(notebook))
    wanted = {**config.get("defaults", {}), **config.get(notebook.stem, {}), **overrides}
    unknown = set(config.get(notebook.stem, {})) - declared
    if unknown:
        raise SystemExit(f"{notebook.name}: configs name parameters it does not declare: {sorted(unknown)}")
    return {k: v for k, v in wanted.items() if k in declared}


def package_versions() -> dict:
    from medcap_utils.metrics.provenance import package_versions as versions

    return versions(PACKAGES)


def git_state(root: Path) -> dict:
    def git(*args):
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
        return out.stdout.strip() if out.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(status) if status is not None else None}


def _shown(path: Path, root: Path) -> str:
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def lock_state(root: Path) -> dict:
    """The lock file the environment was installed from (``requirements-lock.txt``) and its sha256, and
    whether the installed versions match it (a run on other versions says so in its manifest)."""
    import hashlib
    from importlib import metadata

    lock = root / "requirements-lock.txt"
    if not lock.exists():
        return {"file": None}
    pins = {}
    for line in lock.read_text().splitlines():
        name, sep, version = line.split("#")[0].strip().partition("==")
        if sep:
            pins[name.lower()] = version.strip()
    differs = {}
    for name, version in pins.items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = None
        if installed is None or installed.split("+")[0] != version:
            differs[name] = {"lock": version, "installed": installed}
    return {"file": lock.name, "sha256": hashlib.sha256(lock.read_bytes()).hexdigest(), "pins": len(pins),
            "differs": differs}


def hub_state(profile: str, root: Path) -> dict:
    """Every hub id the profile's recipes name, with the revision found in the local Hugging Face cache
    (``None``: not cached here). The demo names none that it loads, so it records none."""
    from medcap_utils.hub import cached_snapshot, profile_hub_ids

    if profile == "demo":
        return {}
    snapshots = {hub_id: cached_snapshot(hub_id) for hub_id in profile_hub_ids(profile, root)}
    return {hub_id: snap.name if snap else None for hub_id, snap in snapshots.items()}


def failing_cell(error) -> str:
    """Index and first source line of the cell papermill reports as failed."""
    index = getattr(error, "exec_count", None)
    cell = getattr(error, "cell_index", None)
    source = (getattr(error, "source", "") or "").strip().splitlines()
    first = source[0] if source else ""
    where = f"cell {cell}" if cell is not None else f"execution count {index}"
    return f"{where} ({first!r}): {getattr(error, 'ename', '')}: {getattr(error, 'evalue', error)}"


def run(profile: str, data: str | None = None, only: list[str] | None = None, root: Path | None = None,
        reports: str | Path | None = None) -> int:
    """Execute the notebooks; returns 0 when all ran, 1 at the first failure.

    ``reports``: the folder for every output (executed notebooks, tables, figures, runs, models), instead of
    the profile's ``reports:`` or ``reports/``; ``make repeat-check`` runs a profile twice into two of them.
    """
    root = root or repo_root()
    all_notebooks = numbered_notebooks(root / "notebooks")
    notebooks = all_notebooks
    if only:
        notebooks = [p for p in notebooks if any(p.name.startswith(o) for o in only)]
        # every prefix must select something: a typo beside a valid prefix would otherwise be skipped quietly
        unmatched = [o for o in only if not any(p.name.startswith(o) for p in all_notebooks)]
        if unmatched:
            raise SystemExit(f"--only {' '.join(unmatched)} matches no notebook in {root / 'notebooks'}; "
                             f"notebooks: {' '.join(p.name for p in all_notebooks)}")
    config = load_profile(profile, root / "configs", all_notebooks)
    # the notebooks' `profile` parameter is the code path (demo or rocov2); a derived profile such as
    # rocov2-smoke sets it through its parent's defaults
    overrides = {**({"data_dir": data} if data else {})}
    if config.get("defaults", {}).get("profile", "demo") == "demo":  # the demo never touches a hub
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    if reports is not None:
        reports = Path(reports) if Path(reports).is_absolute() else root / reports
    else:
        reports = (root / config["reports"]) if config.get("reports") else root / "reports"
    kernel_env = {"MEDCAP_REPORTS": str(reports),  # read by medcap_utils.paths.reports_root in every kernel
                  # figures inline in the executed copies (a caller's MPLBACKEND=Agg would leave only file paths)
                  "MPLBACKEND": "module://matplotlib_inline.backend_inline",
                  # progress bars as whole lines, not widgets nobody draws (medcap_utils.progress), even when this
                  # runs from a JupyterLab kernel, whose JPY_SESSION_NAME the kernels would inherit
                  "MEDCAP_PROGRESS": "lines"}
    previous = {key: os.environ.get(key) for key in kernel_env}
    os.environ.update(kernel_env)
    try:
        return _run_notebooks(profile, root, notebooks, config, overrides, reports, only)
    finally:  # the caller's process keeps its own environment
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _run_notebooks(profile, root, notebooks, config, overrides, reports, only) -> int:
    import papermill

    out_dir = reports / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = {"profile": profile, "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "git": git_state(root), "python": sys.version.split()[0], "platform": platform.platform(),
                "cpu_count": os.cpu_count(), "packages": package_versions(), "lock": lock_state(root),
                "hub": hub_state(config.get("defaults", {}).get("profile", profile), root), "notebooks": []}
    # a run of some notebooks never replaces the record of a full run; either file is replaced whole
    # (atomic_write_json), so a kill or a full disk leaves the previous manifest readable
    manifest_path = reports / ("manifest.json" if not only else "manifest-partial.json")
    status = 0
    total = time.perf_counter()
    for k, notebook in enumerate(notebooks, 1):
        params = notebook_parameters(config, notebook, overrides)
        print(f"[{k}/{len(notebooks)}] {notebook.name} {params}", flush=True)
        entry = {"notebook": notebook.name, "parameters": params, "output": _shown(out_dir / notebook.name, root)}
        start = time.perf_counter()
        try:
            papermill.execute_notebook(str(notebook), str(out_dir / notebook.name), parameters=params,
                                       cwd=str(notebook.parent), kernel_name="python3", progress_bar=True)
            entry["status"] = "ok"
        except papermill.PapermillExecutionError as error:
            entry.update(status="failed", error=failing_cell(error))
            print(f"FAILED: {notebook.name}, {entry['error']}", file=sys.stderr)
            status = 1
        entry["wall_s"] = round(time.perf_counter() - start, 1)
        print(f"    {entry['status']} in {entry['wall_s']} s", flush=True)
        manifest["notebooks"].append(entry)
        atomic_write_json(manifest_path, manifest)
        if status:
            break
    from medcap_utils.report import figures_not_inline

    manifest["figures_not_inline"] = figures_not_inline(reports)  # every saved figure also shown in its notebook
    for problem in manifest["figures_not_inline"]:
        print(f"WARNING: {problem}", file=sys.stderr)
    manifest["total_wall_s"] = round(time.perf_counter() - total, 1)
    manifest["finished"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    manifest["status"] = "ok" if status == 0 else "failed"
    atomic_write_json(manifest_path, manifest)
    print(f"{manifest['status']}: {len(manifest['notebooks'])} notebooks in {manifest['total_wall_s']} s; "
          f"manifest {_shown(manifest_path, root)}")
    return status


def main(argv=None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog or "python -m medcap_utils.runner.reproduce", description=__doc__)
    parser.add_argument("--profile", default="demo", help="configs/<profile>.yaml: demo (CPU) or rocov2 (GPU)")
    parser.add_argument("--data", default=None, help="dataset directory (overrides data_dir)")
    parser.add_argument("--only", nargs="*", default=None, help="notebook number prefixes, e.g. 00 01")
    parser.add_argument("--reports", default=None,
                        help="folder for all outputs, models included (default: the profile's, else reports/)")
    args = parser.parse_args(argv)
    try:
        return run(args.profile, data=args.data, only=args.only, reports=args.reports)
    except SystemExit as stop:  # a profile, section or --only the user can fix: one line, exit 1, no traceback
        if not isinstance(stop.code, str):
            raise
        print(f"error: {stop.code}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
