"""Shared fixtures: a small synthesized demo dataset and the real ROCOv2 sample rows."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests never reach a model or dataset hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parents[1]
SAMPLE_DIR = REPO.parent / "shared" / "data" / "rocov2-sample"


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    """The 93 real ROCOv2 test rows (captions + concepts, no images) in ../shared."""
    if not (SAMPLE_DIR / "test_captions.csv").exists():
        pytest.skip("../shared/data/rocov2-sample is not beside the repository")
    return SAMPLE_DIR


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory) -> Path:
    """A small demo dataset (240/40/40 images, seed 0) in the exact ROCOv2 layout, built once."""
    from medcap_utils.data.synth import synthesize

    root = tmp_path_factory.mktemp("demo")
    synthesize(root, seed=0, n_train=240, n_valid=40, n_test=40)
    return root


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Image caches of the tests go to a temporary folder, not reports/cache."""
    os.environ["MEDCAP_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield


# Variables that move where a test reads or writes; a test that sets one must restore it (monkeypatch).
_WHERE = ("MEDCAP_REPORTS", "MEDCAP_ROOT", "MEDCAP_CACHE", "HF_HOME", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


@pytest.fixture(autouse=True)
def _environment_restored(request):
    """Fails the test that leaves one of these changed: later tests would read or write somewhere else (the
    Colab tests once left MEDCAP_REPORTS on a deleted Drive folder and five later tests failed far away)."""
    before = {key: os.environ.get(key) for key in _WHERE}
    yield
    after = {key: os.environ.get(key) for key in _WHERE}
    changed = {key: (before[key], after[key]) for key in _WHERE if before[key] != after[key]}
    assert not changed, f"{request.node.nodeid} left the environment changed: {changed}"


def pytest_addoption(parser):
    parser.addoption("--smoke-reports", default=None,
                     help="reports folder of a finished `make smoke` run (tests/test_smoke_run.py checks it)")
