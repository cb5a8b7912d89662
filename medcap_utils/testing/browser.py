"""The results explorer in a real browser: JupyterLab headless, a notebook run in headless Chromium.

:func:`explorer_in_browser` starts ``jupyter lab`` from this environment on a free port with a random
token, in a scratch folder with its own Jupyter config (no user settings, no news pop-up), writes a
notebook there that calls :func:`medcap_utils.explorer.app.explore`, opens it in headless Chromium through
Selenium (Debian's ``chromium`` and ``chromium-driver``: ``make chromium`` installs them), runs all cells
the way JupyterLab's *Run > Run All Cells* does, waits until the widgets render the first image's reference
caption, picks another image in the image dropdown, waits for its reference and captions, and saves a
screenshot. Used by ``tests/test_explorer_browser.py`` and by
``python -m medcap_utils.testing explorer-screenshot`` (a screenshot over any reports folder).
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

PAGE_CONFIG = {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}


def chromium_paths() -> tuple[str | None, str | None, str]:
    """(browser, driver, why not) for Debian's chromium + chromium-driver (the driver's own folder first)."""
    browser = next((p for p in (shutil.which("chromium"), "/usr/bin/chromium", shutil.which("chromium-browser"),
                                shutil.which("google-chrome")) if p and os.path.exists(p)), None)
    driver = next((p for p in (shutil.which("chromedriver"), "/usr/bin/chromedriver") if p and os.path.exists(p)), None)
    missing = [name for name, path in (("chromium", browser), ("chromedriver (chromium-driver)", driver)) if not path]
    return browser, driver, (f"not found: {', '.join(missing)} (make chromium installs them)" if missing else "")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def jupyter_lab(folder: Path, env: dict | None = None, timeout: float = 60):
    """``jupyter lab`` on ``folder`` (headless, free port, random token); yields (base URL, token)."""
    folder = Path(folder)
    config = folder / ".jupyter"
    (config / "labconfig").mkdir(parents=True, exist_ok=True)
    (config / "labconfig" / "page_config.json").write_text(json.dumps(PAGE_CONFIG))
    port, token = _free_port(), secrets.token_hex(16)
    lab_env = {**os.environ, **(env or {}), "JUPYTER_CONFIG_DIR": str(config),
               "JUPYTERLAB_SETTINGS_DIR": str(config / "settings"), "JUPYTERLAB_WORKSPACES_DIR": str(config / "ws"),
               "JUPYTER_RUNTIME_DIR": str(config / "runtime"), "JUPYTER_DATA_DIR": str(config / "data")}
    jupyter = Path(sys.executable).with_name("jupyter")
    log = open(folder / "jupyter-lab.log", "w")
    process = subprocess.Popen([str(jupyter), "lab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
                                f"--IdentityProvider.token={token}", f"--notebook-dir={folder}",
                                "--LabApp.expose_app_in_browser=True",
                                *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])],
                               env=lab_env, stdout=log, stderr=subprocess.STDOUT, cwd=folder)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"jupyter lab did not start: {(folder / 'jupyter-lab.log').read_text()[-2000:]}")
                time.sleep(0.3)
        yield base, token
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@contextlib.contextmanager
def chromium(width: int = 1440, height: int = 1100):
    """Headless Chromium through Selenium with the system's chromedriver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver_path, why = chromium_paths()
    if why:
        raise FileNotFoundError(why)
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 f"--window-size={width},{height}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def explorer_notebook(reports, data_dir) -> dict:
    source = (f"from medcap_utils.explorer.app import explore\n\n"
              f"explore(reports={str(reports)!r}, data_dir={str(data_dir) if data_dir else None!r})")
    return {"cells": [{"cell_type": "code", "execution_count": None, "id": "explorer", "metadata": {}, "outputs": [],
                       "source": source}],
            "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
            "nbformat": 4, "nbformat_minor": 5}


KERNEL_IDLE = """const app = window.jupyterapp; const panel = app && app.shell.currentWidget;
const kernel = panel && panel.sessionContext && panel.sessionContext.session && panel.sessionContext.session.kernel;
return kernel ? kernel.status : null;"""


def explorer_in_browser(reports, data_dir, screenshot, other_image: str | None = None, folder=None,
                        timeout: float = 90, window: tuple[int, int] = (1440, 1100), log=print) -> dict:
    """Run the explorer over ``reports`` in JupyterLab + headless Chromium; pick ``other_image`` (default: the
    second image of the first split); save ``screenshot``. Returns the captions seen and the timings."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from medcap_utils.explorer.data import ExplorerData

    start = time.perf_counter()
    data = ExplorerData(reports, data_dir)
    split = data.splits()[0]
    ids = data.images(split)
    other_image = other_image or ids[1]
    expected = {i: data.references(split)[i] for i in (ids[0], other_image)}
    folder = Path(folder) if folder else Path(__import__("tempfile").mkdtemp(prefix="explorer-lab-"))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "explorer.ipynb").write_text(json.dumps(explorer_notebook(
        Path(reports).resolve(), Path(data_dir).resolve() if data_dir else None)))
    repo = Path(__file__).resolve().parents[2]
    env = {"PYTHONPATH": os.pathsep.join(p for p in (str(repo), os.environ.get("PYTHONPATH", "")) if p),
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    times = {}
    with jupyter_lab(folder, env) as (base, token), chromium(*window) as driver:
        times["lab_started_s"] = time.perf_counter() - start
        wait = WebDriverWait(driver, timeout, poll_frequency=0.25)
        driver.get(f"{base}/lab/tree/explorer.ipynb?token={token}")
        wait.until(lambda d: d.execute_script(KERNEL_IDLE) == "idle")
        times["kernel_idle_s"] = time.perf_counter() - start
        driver.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells');")

        def text(d, css):  # read in one script: an HTML widget replaces its elements when its value changes
            return d.execute_script("const e = document.querySelector(arguments[0]); return e ? e.innerText : null;",
                                    f".medcap-explorer {css}")

        def reference_text(d):
            return text(d, ".medcap-reference-text")

        wait.until(lambda d: reference_text(d) == expected[ids[0]])
        times["widgets_rendered_s"] = time.perf_counter() - start
        widgets = len(driver.find_elements(By.CSS_SELECTOR, ".medcap-explorer .jupyter-widgets"))
        captions_before = text(driver, ".medcap-captions")
        Select(driver.find_element(By.CSS_SELECTOR, ".medcap-image select")).select_by_visible_text(other_image)
        wait.until(lambda d: reference_text(d) == expected[other_image])
        wait.until(lambda d: d.execute_script(KERNEL_IDLE) == "idle")  # the attention map is drawn after the text
        captions_after = text(driver, ".medcap-captions")
        times["image_changed_s"] = time.perf_counter() - start
        driver.execute_script("window.jupyterapp.shell.collapseLeft();"
                              "window.jupyterapp.commands.execute('notebook:hide-all-cell-code');")
        driver.execute_script("document.querySelector('.medcap-explorer').scrollIntoView({block: 'start'});")
        time.sleep(0.5)  # let the images of the new view paint
        Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(screenshot))
    times["total_s"] = time.perf_counter() - start
    log(f"explorer in JupyterLab + headless Chromium: {widgets} widgets, image {ids[0]} -> {other_image}; "
        f"screenshot {Path(screenshot).resolve()}; " + ", ".join(f"{k} {v:.1f}" for k, v in times.items()))
    return {"first": ids[0], "other": other_image, "references": expected, "widgets": widgets,
            "captions_before": captions_before, "captions_after": captions_after, "times": times,
            "screenshot": Path(screenshot).resolve()}
