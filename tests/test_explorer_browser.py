"""The results explorer in a real browser: JupyterLab headless, the notebook run in headless Chromium.

Starts ``jupyter lab`` from this environment, opens a notebook that calls ``explore`` on the tiny fixture,
runs all cells, checks that the widgets render the first image's reference, picks another image in the
image dropdown, checks that the reference and the run captions shown change, and saves a screenshot to
``build/explorer_screenshot.png``. Skipped, with the reason printed, only where Chromium or its driver is
missing (``make chromium``, part of ``make test``, installs Debian's ``chromium`` and ``chromium-driver``).
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from medcap_utils.testing.browser import chromium_paths, explorer_in_browser
from medcap_utils.testing.explorer_fixture import CAPTION_RUNS, write_explorer_fixture

SCREENSHOT = Path(__file__).resolve().parents[1] / "build" / "explorer_screenshot.png"


@pytest.mark.timeout(300)
def test_explorer_renders_and_follows_the_image_in_chromium(tmp_path, capsys):
    _, _, why = chromium_paths()
    if why:
        with capsys.disabled():
            print(f"\nbrowser test skipped: {why}")
        pytest.skip(why)
    start = time.perf_counter()
    fixture = write_explorer_fixture(tmp_path / "fixture")
    first, second = fixture.ids["test"][:2]
    result = explorer_in_browser(fixture.reports, fixture.data, SCREENSHOT, other_image=second,
                                 folder=tmp_path / "lab", log=lambda _: None)
    seconds = time.perf_counter() - start
    with capsys.disabled():
        print(f"\nbrowser test: {seconds:.1f} s ({', '.join(f'{k} {v:.1f}' for k, v in result['times'].items())}); "
              f"screenshot {result['screenshot']}")
    assert result["first"] == first and result["widgets"] >= 10
    blip = CAPTION_RUNS["blip_demo_test"][1]
    assert blip[first] in result["captions_before"] and blip[second] not in result["captions_before"]
    assert blip[second] in result["captions_after"] and blip[first] not in result["captions_after"]
    assert SCREENSHOT.stat().st_size > 10_000 and SCREENSHOT.read_bytes()[:4] == b"\x89PNG"
