"""The ``medcap`` command (:mod:`medcap_utils.cli`): every subcommand run through ``medcap_utils.cli.main`` on
tiny fixtures, asserting what it wrote, the way the transformers examples test their ``main()``; the console
script declared in pyproject.toml resolves to it, and ``python -m medcap_utils.cli`` runs in a subprocess."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medcap_utils.cli import COMMANDS, main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory) -> Path:
    """``medcap data synth``: 64/8/8 images in the ROCOv2 layout (the other commands read it)."""
    out = tmp_path_factory.mktemp("cli") / "demo"
    assert main(["data", "synth", "--out", str(out), "--seed", "0", "--n-train", "64", "--n-valid", "8",
                 "--n-test", "8"]) == 0
    return out


def test_help_lists_every_command_with_one_line(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    listed = [line.split()[0] for line in out.split("commands:\n")[1].splitlines() if line.startswith("  ")]
    assert listed == list(COMMANDS)
    assert {"data", "reproduce", "train", "caption", "evaluate", "bench"} <= set(COMMANDS)


def test_command_help_is_the_modules_own(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["caption", "--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: medcap caption") and "--num-beams" in out and "--data-dir" in out


def test_unknown_command_is_one_line_and_exit_2(capsys):
    assert main(["captoin"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown command 'captoin'" in err and "caption" in err


def test_data_synth_writes_a_layout_that_data_check_accepts(tiny_demo, capsys):
    for split, n in (("train", 64), ("valid", 8), ("test", 8)):
        assert len(pd.read_csv(tiny_demo / f"{split}_captions.csv")) == n
        assert len(list((tiny_demo / split).glob("*.jpg"))) == n
    capsys.readouterr()
    assert main(["data", "check", str(tiny_demo)]) == 0
    out = capsys.readouterr().out
    assert "problems: none" in out and "images=64" in out
    (tiny_demo / "valid_captions.csv").rename(tiny_demo / "moved.csv")
    try:  # the same check refuses a folder with a CSV missing
        assert main(["data", "check", str(tiny_demo), "--no-decode"]) == 1
    finally:
        (tiny_demo / "moved.csv").rename(tiny_demo / "valid_captions.csv")


def test_evaluate_captions_prints_and_writes_the_bleu_of_a_hand_made_pair(tmp_path, capsys):
    gt, pred = tmp_path / "gt.csv", tmp_path / "run.csv"
    gt.write_text("ID,Caption\nROCOv2_2023_test_000001,chest ct scan shows mass\n"
                  "ROCOv2_2023_test_000002,knee x ray fracture\n")
    pred.write_text("ID,Caption\nROCOv2_2023_test_000001,chest ct scan shows nodule\n"
                    "ROCOv2_2023_test_000002,knee x ray fracture\n")
    out = tmp_path / "metrics.json"
    assert main(["evaluate", "captions", "--gt", str(gt), "--pred", str(pred), "--metrics", "Bleu_1",
                 "--bootstrap", "0", "--out", str(out)]) == 0
    # corpus BLEU-1: 8 of the 9 predicted words are in their reference, and the lengths are equal (no penalty)
    assert json.loads(out.read_text())["scores"]["Bleu_1"] == pytest.approx(8 / 9, rel=1e-6)
    assert json.loads(capsys.readouterr().out)["Bleu_1"] == pytest.approx(8 / 9, rel=1e-6)


def test_caption_writes_one_caption_per_image_of_a_split(tiny_demo, tmp_path):
    from medcap_utils.data.rocov2 import split_frame
    from medcap_utils.evaluation.runfiles import read_run_dir, read_run_file
    from medcap_utils.models.blip import build_demo_blip

    caps = ["Axial CT of the chest.", "Knee radiograph showing a fracture.", "Brain MRI without abnormality."] * 4
    model = build_demo_blip(tmp_path / "blip", caps, vocab_size=120, image_size=32, vision_hidden=32,
                            vision_layers=1, text_hidden=32, text_layers=1, heads=2)
    assert main(["caption", "--model", str(model), "--data-dir", str(tiny_demo), "--split", "test",
                 "--run-name", "tiny", "--runs-root", str(tmp_path / "runs"), "--max-new-tokens", "5"]) == 0
    info, run_file = read_run_dir(tmp_path / "runs" / "tiny")
    ids = split_frame(tiny_demo, "test")["id"].tolist()
    captions = read_run_file(run_file, "captions", valid_ids=ids, require_all=True)
    assert sorted(captions) == sorted(ids) and len(ids) == 8 and info["split"] == "test"


def test_caption_of_a_missing_image_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["caption", "--model", str(tmp_path / "no-model"), str(tmp_path / "missing.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "missing.png" in err


@pytest.mark.slow
def test_train_writes_a_model_whose_loss_falls_below_a_uniform_guess(tiny_demo, tmp_path, capsys):
    out = tmp_path / "model"
    assert main(["train", "--recipe", "configs/recipes/2q2t-2024.yaml", "--model-key", "blip_base",
                 "--profile", "demo", "--data-dir", str(tiny_demo), "--out", str(out), "--epochs", "3",
                 "--batch-size", "8", "--lr", "3e-3"]) == 0
    assert f"model saved to {out}" in capsys.readouterr().out
    assert (out / "model.safetensors").exists() and (out / "tokenizer.json").exists()
    vocab = json.loads((out / "config.json").read_text())["text_config"]["vocab_size"]
    history = pd.read_csv(out / "history.csv")
    assert len(history) == 3 and history["train_loss"].is_monotonic_decreasing
    # a model that learned nothing scores ln(vocab) (~6.6 here); 24 steps reach ~4.3
    assert history["train_loss"].iloc[-1] < math.log(vocab) - 1.5


def test_train_with_an_unknown_recipe_key_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["train", "--recipe", "configs/recipes/2q2t-2024.yaml", "--model-key", "blip_bsae",
                 "--profile", "demo", "--data-dir", str(tmp_path), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "blip_bsae" in err


def test_reproduce_refuses_an_unknown_profile_in_one_line(capsys):
    assert main(["reproduce", "--profile", "no-such-profile"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown profile 'no-such-profile'" in err and "demo" in err
    with pytest.raises(SystemExit) as stop:
        main(["reproduce", "--help"])
    assert stop.value.code == 0 and "usage: medcap reproduce" in capsys.readouterr().out


def test_repeat_check_compares_two_folders(tmp_path, capsys):
    for name, bleu in (("a", 0.25), ("b", 0.25), ("c", 0.5)):
        (tmp_path / name / "tables").mkdir(parents=True)
        (tmp_path / name / "tables" / "scores.csv").write_text(f"model,bleu\nblip,{bleu}\n")
    assert main(["repeat-check", "--compare", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    assert json.loads((tmp_path / "repeat-report.json").read_text())["identical"]
    assert main(["repeat-check", "--compare", str(tmp_path / "a"), str(tmp_path / "c")]) == 1
    assert "tables/scores.csv" in json.loads((tmp_path / "repeat-report.json").read_text())["value_differences"]
    capsys.readouterr()
    assert main(["repeat-check", "--compare", str(tmp_path / "a"), str(tmp_path / "nowhere")]) == 1
    assert capsys.readouterr().err == f"error: {tmp_path / 'nowhere'} is not a folder\n"


def test_bench_writes_its_json(tiny_demo, tmp_path, capsys):
    assert main(["bench", "decode", "--model", "tiny", "--steps", "1", "--warmup", "0", "--batch-size", "2",
                 "--image-size", "32", "--data-dir", str(tiny_demo), "--json", "--out", str(tmp_path)]) == 0
    files = list(tmp_path.glob("*.json"))
    assert len(files) == 1
    records = json.loads(files[0].read_text())
    assert [r["path"] for r in records] == ["hf", "fast"] and all(r["captions_per_s"] > 0 for r in records)
    assert records[1]["identical_to_generate"] == 1.0


def test_loss_curves_rejudges_its_curves(tmp_path, capsys):
    from medcap_utils.runner.loss_curves import RUNS

    rng, steps = np.random.default_rng(0), np.linspace(10.0, 6.0, 30)
    table = pd.DataFrame({f"{p}_{d}": steps + rng.normal(0, 1e-3, 30) * (d == "bf16") for p, d in RUNS},
                         index=pd.RangeIndex(1, 31, name="step"))  # bf16 curves: rounding noise only
    table.to_csv(tmp_path / "curves.csv")
    (tmp_path / "summary.json").write_text(json.dumps({"model": "tiny", "seed": 0}))
    assert main(["loss-curves", "--rejudge", "--out", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "summary.json").read_text())["agree"] and (tmp_path / "loss_curves.png").exists()
    table["fast_bf16"] += 0.01  # every step 0.01 off: not bf16 rounding
    table.to_csv(tmp_path / "curves.csv")
    assert main(["loss-curves", "--rejudge", "--out", str(tmp_path)]) == 1
    assert main(["loss-curves", "--rejudge", "--out", str(tmp_path / "none")]) == 2
    assert "curves.csv" in capsys.readouterr().err


def test_badges_check_and_show(capsys):
    from medcap_utils.runner.colab import ref, repository

    assert main(["badges", "check"]) == 0
    assert f"open {repository()} at {ref()} in Colab" in capsys.readouterr().out
    assert main(["badges", "show"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["ref"] == ref() and "00_data_setup.ipynb" in shown["badges"]


def _medcap(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "medcap_utils.cli", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=timeout, env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})


def test_models_lists_what_the_cache_holds(tmp_path):
    from medcap_utils.testing.local_hub import write_local_hub

    cached, missing = "Salesforce/blip-image-captioning-base", "microsoft/resnet-101"
    write_local_hub(tmp_path / "hf", ids=[cached])
    proc = _medcap("models", "list", "--profile", "rocov2", "--ids", cached, missing,
                   env={"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert any(line.startswith(f"{cached}  cached ") for line in lines)
    assert f"{missing}  NOT CACHED" in lines
    bad = _medcap("models", "list", "--profile", "no-such-profile")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "no-such-profile" in bad.stderr


def test_python_dash_m_cli_help_in_a_subprocess():
    proc = _medcap("--help", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: medcap") and all(f"  {name} " in proc.stdout for name in COMMANDS)


def test_console_script_resolves_to_cli_main(capsys):
    text = (REPO / "pyproject.toml").read_text()
    section = text.split("[project.scripts]\n", 1)[1].split("\n[", 1)[0]
    declared = dict(line.replace('"', "").split(" = ") for line in section.splitlines() if " = " in line)
    assert declared == {"medcap": "medcap_utils.cli:main"}
    script = metadata.EntryPoint(name="medcap", value=declared["medcap"], group="console_scripts")
    assert script.load() is main
    assert script.load()(["badges", "show"]) == 0 and json.loads(capsys.readouterr().out)["badges"]


def test_installed_console_script_runs(tmp_path):
    """The entry point of the installed distribution (``make env`` installs it): found through
    importlib.metadata, and the ``medcap`` file beside this interpreter runs."""
    scripts = [ep for ep in metadata.entry_points(group="console_scripts") if ep.name == "medcap"]
    if not scripts:
        pytest.skip("this environment's install of medcap predates [project.scripts]; `make env` reinstalls it")
    assert [ep.value for ep in scripts] == ["medcap_utils.cli:main"]
    assert scripts[0].load() is main
    binary = Path(sys.executable).parent / "medcap"
    proc = subprocess.run([str(binary), "--help"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0 and all(f"  {name} " in proc.stdout for name in COMMANDS)
