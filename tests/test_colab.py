"""Colab: badges from pyproject.toml, and the setup cell on a CPU with a faked google.colab (nothing is cloned,
installed or mounted: the commands are recorded)."""
from __future__ import annotations

import json
import os
import shutil
import sys
import types
from importlib import metadata
from pathlib import Path

import pytest
import torch

import medcap_utils
from medcap_utils.runner import colab
from medcap_utils.runner.reproduce import numbered_notebooks

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = numbered_notebooks(REPO / "notebooks")


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_every_badge_and_setup_cell_agrees_with_pyproject():
    project = _pyproject()["project"]
    assert colab.repository() == project["urls"]["Repository"] == "https://github.com/medcap-project/medcap"
    assert colab.ref() == f"v{project['version']}" == f"v{medcap_utils.__version__}"
    assert colab.badge_problems(NOTEBOOKS) == [], "run `make badges`"
    first = "".join(json.loads(NOTEBOOKS[2].read_text())["cells"][0]["source"])
    assert (f"[![Open In Colab]({colab.BADGE_IMAGE})](https://colab.research.google.com/github/medcap-project/medcap/"
            f"blob/{colab.ref()}/notebooks/{NOTEBOOKS[2].name})") in first


def test_badges_rewrites_a_stale_badge_and_adds_a_missing_setup_cell(tmp_path):
    path = tmp_path / NOTEBOOKS[0].name
    nb = json.loads(NOTEBOOKS[0].read_text())
    stale = "[![Open In Colab](x.svg)](https://old/blob/v0.0.1/a.ipynb)\n"
    nb["cells"][0]["source"] = ["# 00 · Data setup\n", "\n", stale, "\n", "Purpose: ..."]
    nb["cells"] = [c for c in nb["cells"] if colab.SETUP_TAG not in c["metadata"].get("tags", [])]
    path.write_text(json.dumps(nb))
    assert colab.badge_problems([path])
    assert colab.update_notebook(path) and not colab.update_notebook(path)
    assert colab.badge_problems([path]) == []
    cells = json.loads(path.read_text())["cells"]
    assert "".join(cells[0]["source"]).count("Open In Colab") == 1 and "v0.0.1" not in "".join(cells[0]["source"])
    assert cells[1]["metadata"]["tags"] == [colab.SETUP_TAG] and cells[2]["metadata"]["tags"] == ["parameters"]


def _cell(notebook: Path) -> str:
    code = [c for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code"]
    return "".join(code[0]["source"])


def test_setup_cell_does_nothing_outside_colab(monkeypatch):
    monkeypatch.setitem(sys.modules, "google.colab", None)  # import google.colab fails, as anywhere but Colab
    calls = []
    monkeypatch.setattr("subprocess.run", lambda *a, **k: calls.append(a))
    monkeypatch.setattr(colab, "setup", lambda *a, **k: calls.append(a))
    cwd, env, path = os.getcwd(), dict(os.environ), list(sys.path)
    for notebook in NOTEBOOKS:
        namespace: dict = {}
        exec(compile(_cell(notebook), notebook.name, "exec"), namespace)
        assert set(namespace) == {"__builtins__"}, notebook.name
    assert calls == [] and os.getcwd() == cwd and dict(os.environ) == env and sys.path == path


def _fake_google_colab(monkeypatch, **attributes) -> types.ModuleType:
    """``import google.colab`` works and gives a module with ``attributes``."""
    module = types.ModuleType("google.colab")
    module.__dict__.update(attributes)
    monkeypatch.setitem(sys.modules, "google.colab", module)
    if "google" not in sys.modules:
        try:
            import google  # noqa: F401 - a namespace package of other distributions
        except ImportError:
            monkeypatch.setitem(sys.modules, "google", types.ModuleType("google"))
    return module


@pytest.fixture
def fake_colab(monkeypatch, tmp_path):
    """google.colab with a recording drive.mount, and a copy of the repository's configs and notebooks."""
    mounted = []
    _fake_google_colab(monkeypatch, drive=types.SimpleNamespace(mount=lambda where: mounted.append(where)))
    root = tmp_path / "medcap"
    for part in ("configs", "notebooks"):
        shutil.copytree(REPO / part, root / part)
    shutil.copy(REPO / "pyproject.toml", root)
    monkeypatch.setattr(colab, "DRIVE_MOUNT", str(tmp_path / "drive"))
    monkeypatch.chdir(tmp_path)  # setup() changes directory; restored afterwards
    for key in ("MEDCAP_ROOT", "MEDCAP_REPORTS", "MEDCAP_COLAB_PROFILE", "MEDCAP_COLAB_DRIVE"):
        # setenv first so that monkeypatch records the original state: a delenv of an absent key records
        # nothing, and the values setup() writes into os.environ would leak into every later test
        monkeypatch.setenv(key, "")
        monkeypatch.delenv(key)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    commands = []
    monkeypatch.setattr(colab.subprocess, "run", lambda cmd, **k: commands.append(cmd))
    version = metadata.version
    monkeypatch.setattr(metadata, "version", lambda name: (_ for _ in ()).throw(metadata.PackageNotFoundError(name))
                        if name == "medcap" else version(name))  # not installed yet, as on a fresh runtime
    built = []
    monkeypatch.setattr("medcap_utils.data.synth.synthesize", lambda out, **k: built.append(("synth", Path(out), k)))
    monkeypatch.setattr("medcap_utils.data.subset.subset",
                        lambda out, sizes, **k: built.append(("hf", Path(out), sizes, k)))
    return types.SimpleNamespace(root=root, mounted=mounted, commands=commands, built=built, tmp=tmp_path)


def _gpu(monkeypatch, capability, name):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    props = types.SimpleNamespace(name=name, total_memory=16 << 30)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda i: (15 << 30, 16 << 30))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i: capability)


def test_setup_cell_on_colab_clones_at_the_ref_and_calls_setup(monkeypatch):
    _fake_google_colab(monkeypatch)
    commands, calls = [], []
    monkeypatch.setattr("subprocess.run", lambda cmd, **k: commands.append(cmd))
    monkeypatch.setattr(colab, "setup", lambda notebook: calls.append(notebook) or "decided")
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(os.path, "isdir", lambda p: False)  # no clone in /content yet
    namespace: dict = {}
    exec(compile(_cell(NOTEBOOKS[2]), NOTEBOOKS[2].name, "exec"), namespace)
    assert commands == [["git", "clone", "--depth", "1", "--branch", colab.ref(), colab.repository() + ".git",
                         colab.CLONE_DIR]]
    assert sys.path[0] == colab.CLONE_DIR and calls == [NOTEBOOKS[2].stem] and namespace["colab"] == "decided"


def test_t4_gets_fp16_the_subset_profile_drive_and_colabs_torch(fake_colab, monkeypatch):
    _gpu(monkeypatch, (7, 5), "Tesla T4")
    s = colab.setup("02_blip_finetuning", root=fake_colab.root)
    assert (s.precision, s.profile, s.capability) == ("fp16", "rocov2-subset", (7, 5))
    pip = fake_colab.commands[0]
    assert pip[:6] == [sys.executable, "-m", "pip", "install", "-q", "-e"] and pip[6] == str(fake_colab.root)
    constraints = Path(pip[pip.index("-c") + 1]).read_text().splitlines()
    assert f"torch=={torch.__version__.split('+')[0]}" in constraints  # Colab's build stays
    assert fake_colab.mounted == [colab.DRIVE_MOUNT]
    reports = Path(colab.DRIVE_MOUNT) / "MyDrive" / "medcap" / "rocov2-subset" / "reports"
    assert os.environ["MEDCAP_REPORTS"] == s.reports == str(reports)  # models and their checkpoints go to Drive
    assert "HF_HUB_OFFLINE" not in os.environ  # the subset and the checkpoints come from the hub
    assert s.parameters["profile"] == "rocov2" and s.parameters["data_dir"] == "data/rocov2-subset"
    kind, out, sizes, kwargs = fake_colab.built[0]
    assert kind == "hf" and out == fake_colab.root / "data" / "rocov2-subset"
    assert sizes == {"train": 300, "valid": 100, "test": 100} and kwargs["source"] == "eltorio/ROCOv2-radiology"
    assert Path.cwd() == fake_colab.root / "notebooks" and s.installed == "installed"


def test_a100_gets_bf16(fake_colab, monkeypatch):
    _gpu(monkeypatch, (8, 0), "NVIDIA A100-SXM4-40GB")
    s = colab.setup("04_decoding_experiments", root=fake_colab.root, drive=False)
    assert (s.precision, s.profile, s.drive) == ("bf16", "rocov2-subset", None)
    assert fake_colab.mounted == [] and s.reports == str(fake_colab.root / "reports")


def test_no_gpu_gets_fp32_and_the_demo_built_when_absent(fake_colab, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    s = colab.setup("03_medblip_ablation", root=fake_colab.root)
    assert (s.precision, s.profile, s.data) == ("no", "demo", "built")
    assert fake_colab.built == [("synth", fake_colab.root / "data" / "demo",
                                 {"seed": 0, "n_train": 1200, "n_valid": 200, "n_test": 200})]
    assert s.reports == str(Path(colab.DRIVE_MOUNT) / "MyDrive" / "medcap" / "demo" / "reports")
    assert colab.setup("00_data_setup", root=fake_colab.root).data == "left to notebook 00"  # 00 builds it itself


def test_a_declined_drive_keeps_the_run_on_the_runtime(fake_colab, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(sys.modules["google.colab"].drive, "mount",
                        lambda where: (_ for _ in ()).throw(ValueError("mount failed")))
    s = colab.setup("01_dataset_statistics", root=fake_colab.root)
    assert s.drive is None and s.reports == str(fake_colab.root / "reports")
    assert "lost" in capsys.readouterr().out


def test_the_profiles_values_replace_the_defaults_once_the_parameters_cell_ran(monkeypatch, capsys):
    registered = []
    shell = types.SimpleNamespace(user_ns={}, events=types.SimpleNamespace(register=lambda e, f: registered.append(f),
                                                                         unregister=lambda e, f: None))
    monkeypatch.setattr("IPython.get_ipython", lambda: shell)
    assert colab.apply_after_parameters({"profile": "rocov2", "data_dir": "data/rocov2-subset"}, "Colab sets")

    def ran(cell):
        registered[-1](types.SimpleNamespace(info=types.SimpleNamespace(raw_cell=cell)))

    shell.user_ns.update(profile="demo", data_dir="data/demo")
    ran("import os")
    assert shell.user_ns["profile"] == "demo"
    ran('profile: str = "demo"  # the defaults\ndata_dir: str = "data/demo"\n')
    assert shell.user_ns == {"profile": "rocov2", "data_dir": "data/rocov2-subset"}
    assert "Colab sets: profile='rocov2'" in capsys.readouterr().out
