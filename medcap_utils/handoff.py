"""The hand-off between notebooks: which model folders and run names each notebook writes and reads.

One table, ``configs/handoff.yaml``, per profile; every notebook asks it instead of naming folders
itself, so notebook 02 saves the 2Q2T BLIP-base where notebooks 03 and 04 look for it, whatever the
profile and the working directory (papermill runs in ``notebooks/``). Names resolve under
:func:`medcap_utils.paths.reports_root`. ``python -m medcap_utils.handoff --profile rocov2`` prints the table.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from medcap_utils.paths import repo_root, reports_root


class HandoffError(KeyError):
    """A name the hand-off table of a profile does not have (message names the profile and the known names)."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class Handoff:
    profile: str
    models: dict[str, str]
    runs: dict[str, str]
    notebooks: dict[str, dict] = field(default_factory=dict)

    def model(self, name: str) -> Path:
        """Absolute folder of model ``name`` (``name/sub`` for a sub-folder, e.g. ``medblip/full``)."""
        head, _, sub = name.partition("/")
        if head not in self.models:
            raise HandoffError(f"profile {self.profile!r} has no model {head!r} in configs/handoff.yaml; "
                               f"known: {sorted(self.models)}")
        path = reports_root() / self.models[head]
        return path / sub if sub else path

    def run(self, name: str) -> str:
        """Run-folder name of ``name`` (under ``<reports root>/runs``)."""
        if name not in self.runs:
            raise HandoffError(f"profile {self.profile!r} has no run {name!r} in configs/handoff.yaml; "
                               f"known: {sorted(self.runs)}")
        return self.runs[name]

    def reads(self, notebook: str) -> dict[str, Path]:
        """Role -> folder for what ``notebook`` (file stem) reads from earlier notebooks."""
        return {role: self.model(name) for role, name in self.notebooks.get(notebook, {}).get("reads", {}).items()}

    def writes(self, notebook: str) -> list[str]:
        return list(self.notebooks.get(notebook, {}).get("writes", []))


def table_name(profile: str, root: Path | None = None) -> str:
    """The hand-off table a profile uses: the one its profile file names with ``handoff:``, else its
    parent's (``extends:``; the smoke profile shares the rocov2 names), else its own."""
    path = (root or repo_root()) / "configs" / f"{profile}.yaml"
    config = (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}
    if config.get("handoff"):
        return config["handoff"]
    return table_name(config["extends"], root) if config.get("extends") else profile


def handoff(profile: str, root: Path | None = None) -> Handoff:
    """The hand-off table of ``profile`` from ``configs/handoff.yaml``."""
    root = root or repo_root()
    tables = yaml.safe_load((root / "configs" / "handoff.yaml").read_text())
    name = table_name(profile, root)
    if name not in tables:
        raise HandoffError(f"configs/handoff.yaml has no table {name!r} (profile {profile!r}); "
                           f"tables: {sorted(tables)}")
    table = tables[name]
    return Handoff(profile, dict(table.get("models", {})), dict(table.get("runs", {})),
                   dict(table.get("notebooks", {})))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m medcap_utils.handoff", description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="demo")
    args = parser.parse_args(argv)
    h = handoff(args.profile)
    for notebook, spec in h.notebooks.items():
        for name in spec.get("writes", []):
            print(f"{notebook} writes {name:22s} {h.model(name)}")
        for role, path in h.reads(notebook).items():
            print(f"{notebook} reads  {role:22s} {path}")
    for name, run in h.runs.items():
        print(f"run {name:26s} {reports_root() / 'runs' / run}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
