"""The package's layout, written down in CONTRIBUTING.md, checked here (in the spirit of test_notebooks_clean.py).

(a) The import rule: ``medcap_utils`` is layered and a module imports only its own layer and those before it
    (``LAYERS``). Nothing in the package imports ``medcap_utils.experiments``, and one experiments module never
    imports another. ``medcap_utils/cli.py`` (the command line, which dispatches to every layer) and
    ``medcap_utils/testing/`` (stand-ins for tests and smoke runs) are the documented exceptions.
(b) Every numbered notebook ``notebooks/NN_name.ipynb`` has ``medcap_utils/experiments/name.py``, whose docstring
    names ``NN_name``, and imports it; every experiments module belongs to a notebook.
(c) No module of ``medcap_utils`` is over ``MAX_LINES`` lines.
(d) Every layer package's ``__init__`` has a docstring that says what the layer holds.

Each check is a function over a folder, so that the tests below can also feed it a bad tree and see it fail.
"""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "medcap_utils"
# "" is the package's root: its infrastructure modules (paths, atomic, device, hub, progress, plotting, ...)
LAYERS = ("", "data", "metrics", "models", "decoding", "training", "evaluation", "analysis", "explorer", "runner",
          "experiments")
EXCEPTIONS = ("cli.py", "testing")  # may import any layer but experiments
MAX_LINES = 400
NOTEBOOK = re.compile(r"^(\d\d)_(\w+)\.ipynb$")


# ---------------------------------------------------------------- (a) the import rule

def module_name(rel: Path) -> str:
    """``data/rocov2.py`` -> ``medcap_utils.data.rocov2``; ``data/__init__.py`` -> ``medcap_utils.data``."""
    parts = [PACKAGE, *rel.with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str:
    """The layer a dotted module of the package belongs to: its first sub-package, or "" for the root's modules."""
    parts = module.split(".")
    if len(parts) > 1 and (parts[1] in LAYERS or parts[1] == "testing"):
        return parts[1]
    return ""


def imported_modules(tree: ast.AST, module: str, is_package: bool):
    """(line, dotted module) for every import of the package anywhere in ``tree`` (module level and inside functions);
    ``from X import name`` counts as ``X.name`` when ``name`` may be a module, relative imports are resolved."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            if base != PACKAGE and not base.startswith(PACKAGE + "."):
                continue
            for alias in node.names:
                # `from medcap_utils import data` imports a layer; `from medcap_utils.data import rocov2` a module
                yield node.lineno, f"{base}.{alias.name}" if alias.name != "*" else base


def _rank(layer: str) -> int:
    return LAYERS.index(layer)


def import_problems(package_dir: Path) -> list[str]:
    """``file:line: message`` for every import that breaks the rule, in the package at ``package_dir``."""
    problems = []
    for path in sorted(package_dir.rglob("*.py")):
        rel = path.relative_to(package_dir)
        module = module_name(rel)
        mine = layer_of(module)
        excepted = rel.parts[0] in EXCEPTIONS
        tree = ast.parse(path.read_text(), filename=str(path))
        for line, target in imported_modules(tree, module, rel.name == "__init__.py"):
            theirs = layer_of(target)
            where = f"{PACKAGE}/{rel.as_posix()}:{line}"
            if theirs == "experiments" and mine != "experiments":
                problems.append(f"{where}: imports {target}; nothing in the package imports experiments")
            elif theirs == "experiments" and ".".join(target.split(".")[:3]) not in (module, f"{PACKAGE}.experiments"):
                problems.append(f"{where}: imports {target}; an experiments module never imports another")
            elif excepted:
                continue
            elif theirs == "testing":
                problems.append(f"{where}: imports {target}; only tests and medcap_utils/testing import testing")
            elif _rank(theirs) > _rank(mine):
                problems.append(f"{where}: imports {target}; layer {mine or 'root'!r} comes before {theirs!r}")
    return problems


# ---------------------------------------------------------------- (b) notebooks and experiments modules

def _code(notebook: Path) -> str:
    cells = json.loads(notebook.read_text())["cells"]
    return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")


def notebook_imports(code: str, name: str) -> bool:
    """Whether notebook code imports ``medcap_utils.experiments.<name>`` (any of the three spellings)."""
    mod = re.escape(f"{PACKAGE}.experiments")
    return bool(re.search(rf"^\s*(from\s+{mod}\.{name}\s+import\b|import\s+{mod}\.{name}\b"
                          rf"|from\s+{mod}\s+import\s+(\(\s*)?([\w\s,]+,\s*)?{name}\b)", code, re.M))


def pairing_problems(root: Path) -> list[str]:
    """Every numbered notebook has its experiments module, named in the module's docstring and imported by the
    notebook; every experiments module has its notebook."""
    problems = []
    experiments = root / PACKAGE / "experiments"
    numbered = {}
    for notebook in sorted((root / "notebooks").glob("*.ipynb")):
        match = NOTEBOOK.match(notebook.name)
        if not match:
            continue
        number, name = match.groups()
        numbered[name] = notebook
        module = experiments / f"{name}.py"
        if not module.exists():
            problems.append(f"notebooks/{notebook.name}: no {PACKAGE}/experiments/{name}.py")
            continue
        doc = ast.get_docstring(ast.parse(module.read_text())) or ""
        if f"{number}_{name}" not in doc:
            problems.append(f"{PACKAGE}/experiments/{name}.py: its docstring does not name {number}_{name}")
        if not notebook_imports(_code(notebook), name):
            problems.append(f"notebooks/{notebook.name}: does not import {PACKAGE}.experiments.{name}")
    for module in sorted(experiments.glob("*.py")):
        if module.stem != "__init__" and module.stem not in numbered:
            problems.append(f"{PACKAGE}/experiments/{module.name}: no notebook notebooks/NN_{module.stem}.ipynb")
    return problems


# ---------------------------------------------------------------- (c) module length, (d) layer docstrings

def long_modules(package_dir: Path, limit: int = MAX_LINES) -> list[str]:
    out = []
    for path in sorted(package_dir.rglob("*.py")):
        lines = len(path.read_text().splitlines())
        if lines > limit:
            out.append(f"{PACKAGE}/{path.relative_to(package_dir).as_posix()}: {lines} lines (at most {limit})")
    return out


def undocumented_layers(package_dir: Path) -> list[str]:
    out = []
    for layer in [*LAYERS, "testing"]:
        init = package_dir / layer / "__init__.py"
        if not init.exists():
            out.append(f"{PACKAGE}/{layer}/__init__.py: missing" if layer else f"{PACKAGE}/__init__.py: missing")
        elif not (ast.get_docstring(ast.parse(init.read_text())) or "").strip():
            out.append(f"{PACKAGE}/{init.relative_to(package_dir).as_posix()}: no docstring")
    return out


# ---------------------------------------------------------------- the repository follows the rules

def test_imports_follow_the_layers():
    problems = import_problems(ROOT / PACKAGE)
    assert not problems, "\n".join(problems)


def test_every_numbered_notebook_has_its_experiments_module():
    assert any(NOTEBOOK.match(p.name) for p in (ROOT / "notebooks").glob("*.ipynb"))
    problems = pairing_problems(ROOT)
    assert not problems, "\n".join(problems)


def test_no_module_is_too_long():
    problems = long_modules(ROOT / PACKAGE)
    assert not problems, "split along a seam (one concern per module):\n" + "\n".join(problems)


def test_every_layer_says_what_it_holds():
    problems = undocumented_layers(ROOT / PACKAGE)
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------- each check can fail

def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


GOOD_PACKAGE = {
    "__init__.py": '"""root"""\nfrom medcap_utils import progress\n',
    "paths.py": "import os\n",
    "progress.py": "",
    "data/__init__.py": '"""data"""\nfrom . import rocov2\n',
    "data/rocov2.py": "from medcap_utils import paths\nfrom ..paths import x\n",
    "models/blip.py": "def f():\n    from medcap_utils.data.rocov2 import read\n",
    "experiments/one.py": "from medcap_utils.runner import reproduce\nfrom medcap_utils.experiments.one import y\n",
    "cli.py": "from medcap_utils.runner import reproduce\n",
    "testing/stub.py": "from medcap_utils.explorer import app\n",
}


def test_import_rule_passes_a_good_tree(tmp_path):
    assert import_problems(_tree(tmp_path, GOOD_PACKAGE)) == []


@pytest.mark.parametrize("rel, text, expected", [
    ("data/rocov2.py", "import medcap_utils.models.blip\n", "data/rocov2.py:1: imports medcap_utils.models.blip"),
    ("paths.py", "\n\nfrom medcap_utils import data\n", "paths.py:3: imports medcap_utils.data"),
    ("models/blip.py", "def f():\n    from medcap_utils.training.loop import fit\n", "models/blip.py:2:"),
    ("data/check.py", "from ..metrics import coco\n", "data/check.py:1: imports medcap_utils.metrics.coco"),
    ("data/__init__.py", "from ..decoding import blip\n", "data/__init__.py:1: imports medcap_utils.decoding"),
    ("runner/reproduce.py", "from medcap_utils.experiments import one\n", "nothing in the package imports"),
    ("cli.py", "from medcap_utils.experiments.one import y\n", "cli.py:1: imports medcap_utils.experiments.one"),
    ("testing/stub.py", "import medcap_utils.experiments.one\n", "nothing in the package imports experiments"),
    ("experiments/two.py", "x = 1\nfrom medcap_utils.experiments import one\n", "two.py:2: imports medcap_utils"
                                                                                    ".experiments.one; an experiments"),
    ("evaluation/evaluate.py", "from medcap_utils.testing import stub\n", "only tests and medcap_utils/testing"),
], ids=lambda v: v if isinstance(v, str) and v.endswith(".py") else "-")
def test_import_rule_names_the_bad_import(tmp_path, rel, text, expected):
    problems = import_problems(_tree(tmp_path, {**GOOD_PACKAGE, rel: text}))
    assert len(problems) == 1 and expected in problems[0], problems


def _notebook(path: Path, code: str) -> None:
    cell = {"cell_type": "code", "metadata": {}, "source": code.splitlines(True), "outputs": [],
            "execution_count": None}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"cells": [{"cell_type": "markdown", "metadata": {}, "source": ["# x"]}, cell]}))


def _paired(tmp_path: Path) -> Path:
    _notebook(tmp_path / "notebooks" / "00_data_setup.ipynb", "from medcap_utils.experiments import data_setup as X\n")
    _notebook(tmp_path / "notebooks" / "01_stats.ipynb", "import medcap_utils.experiments.stats\n")
    _notebook(tmp_path / "notebooks" / "scratch.ipynb", "")
    _tree(tmp_path, {"medcap_utils/experiments/__init__.py": '"""x"""\n',
                     "medcap_utils/experiments/data_setup.py": '"""Notebook 00_data_setup\'s steps."""\n',
                     "medcap_utils/experiments/stats.py": '"""For 01_stats."""\n'})
    return tmp_path


def test_pairing_passes_a_good_tree(tmp_path):
    assert pairing_problems(_paired(tmp_path)) == []


def test_pairing_finds_each_problem(tmp_path):
    root = _paired(tmp_path)
    (root / "medcap_utils/experiments/stats.py").write_text('"""Notebook 01\'s steps."""\n')
    (root / "medcap_utils/experiments/orphan.py").write_text('"""Nobody\'s."""\n')
    _notebook(root / "notebooks" / "02_lonely.ipynb", "import numpy\n")
    _notebook(root / "notebooks" / "00_data_setup.ipynb", "from medcap_utils.experiments import stats\n")
    assert pairing_problems(root) == [
        "notebooks/00_data_setup.ipynb: does not import medcap_utils.experiments.data_setup",
        "medcap_utils/experiments/stats.py: its docstring does not name 01_stats",
        "notebooks/02_lonely.ipynb: no medcap_utils/experiments/lonely.py",
        "medcap_utils/experiments/orphan.py: no notebook notebooks/NN_orphan.ipynb",
    ]


@pytest.mark.parametrize("code, imports", [
    ("from medcap_utils.experiments import data_setup as X", True),
    ("from medcap_utils.experiments import other, data_setup", True),
    ("from medcap_utils.experiments.data_setup import run, table", True),
    ("import medcap_utils.experiments.data_setup as X", True),
    ("from medcap_utils.experiments import data_setup_old", False),
    ("# from medcap_utils.experiments import data_setup", False),
    ("from medcap_utils.data import data_setup", False),
])
def test_notebook_imports_reads_the_three_spellings(code, imports):
    assert notebook_imports(code, "data_setup") is imports


def test_long_modules_names_the_long_one(tmp_path):
    root = _tree(tmp_path, {"a.py": "x = 1\n" * 400, "data/b.py": "x = 1\n" * 401})
    assert long_modules(root) == ["medcap_utils/data/b.py: 401 lines (at most 400)"]


def test_undocumented_layers_names_the_bare_one(tmp_path):
    root = _tree(tmp_path, {f"{layer}/__init__.py".lstrip("/"): f'"""The {layer} layer."""\n'
                            for layer in [*LAYERS, "testing"]})
    assert undocumented_layers(root) == []
    (root / "metrics" / "__init__.py").write_text("from . import coco\n")
    (root / "explorer" / "__init__.py").unlink()
    assert undocumented_layers(root) == ["medcap_utils/metrics/__init__.py: no docstring",
                                         "medcap_utils/explorer/__init__.py: missing"]
