"""`make repeat-check` (issue 14): what counts as a difference between two runs of a profile."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from medcap_utils.runner.repeat_check import compare_runs, is_measurement, main


def _run_folder(root: Path, bleu: float = 0.25, caption: str = "a chest x-ray", seconds: float = 12.0,
                weights: bytes = b"\x00\x01", figure: bytes = b"png") -> Path:
    (root / "tables").mkdir(parents=True)
    (root / "runs" / "blip").mkdir(parents=True)
    (root / "models" / "blip").mkdir(parents=True)
    (root / "figures").mkdir()
    (root / "notebooks").mkdir()
    (root / "tables" / "scores.csv").write_text(f"model,bleu,wall_s,run_dir\nblip,{bleu},{seconds},{root}/runs/blip\n")
    (root / "runs" / "blip" / "scores.json").write_text(json.dumps(
        {"bleu": bleu, "started": f"2026-12-01T10:00:{int(seconds):02d}", "out": str(root / "runs"),
         "peak_mb": 500 + seconds, "provenance": {"created": str(seconds)},
         "per_image": [{"id": "x", "bleu": bleu}], "timing": {"seconds": seconds}}))
    (root / "runs" / "blip" / "hypotheses.jsonl").write_text(json.dumps({"id": "x", "caption": caption}) + "\n")
    (root / "models" / "blip" / "model.safetensors").write_bytes(weights)
    (root / "figures" / "loss.png").write_bytes(figure)
    (root / "notebooks" / "02.ipynb").write_text(json.dumps({"cells": [], "seconds": seconds}))
    (root / "manifest.json").write_text(json.dumps({"started": str(seconds)}))
    return root


def test_runs_that_differ_only_in_timings_memory_paths_notebooks_and_figures_are_identical(tmp_path):
    a = _run_folder(tmp_path / "a", seconds=12.0)
    b = _run_folder(tmp_path / "b", seconds=57.0, figure=b"other png")
    report = compare_runs(a, b)
    assert report["identical"], report
    assert (report["values_compared"], report["weights_compared"], report["figures_compared"]) == (3, 1, 1)
    assert report["figure_differences"] == ["figures/loss.png"]  # reported, not a failure


@pytest.mark.parametrize("change, where", [
    ({"bleu": 0.26}, "tables/scores.csv"),
    ({"caption": "a chest x-ray."}, "runs/blip/hypotheses.jsonl"),
    ({"weights": b"\x00\x02"}, "models/blip/model.safetensors"),
])
def test_any_metric_caption_or_weight_that_differs_is_named(tmp_path, change, where):
    a = _run_folder(tmp_path / "a")
    b = _run_folder(tmp_path / "b", **change)
    report = compare_runs(a, b)
    assert not report["identical"]
    assert where in report["value_differences"] or where in report["weight_differences"]
    if "bleu" in change:  # the per-image value in the run file too, with both values
        assert any("per_image.0.bleu: 0.25 vs 0.26" in d for d in report["value_differences"]["runs/blip/scores.json"])


def test_a_file_written_by_one_run_only_is_a_difference(tmp_path):
    a = _run_folder(tmp_path / "a")
    b = _run_folder(tmp_path / "b")
    (a / "tables" / "extra.csv").write_text("x\n1\n")
    report = compare_runs(a, b)
    assert report["only_in_a"] == ["tables/extra.csv"] and not report["identical"]


def test_timing_names():
    assert all(is_measurement(n) for n in ["wall_s", "seconds", "train_seconds", "started", "finished",
                                      "images_per_s", "throughput", "time", "created", "peak_mb", "delta_mb"])
    assert not any(is_measurement(n) for n in ["bleu", "bertscore_f1", "lr", "learning_rate", "epochs", "steps",
                                          "loss", "meteor", "rouge_l", "concepts"])


def test_compare_cli_exits_1_on_a_difference_and_writes_the_report(tmp_path, capsys):
    a = _run_folder(tmp_path / "a")
    b = _run_folder(tmp_path / "b", bleu=0.3)
    assert main(["--compare", str(a), str(b)]) == 1
    report = json.loads((tmp_path / "repeat-report.json").read_text())
    assert "tables/scores.csv" in report["value_differences"]
    assert "DIFFERENT" in capsys.readouterr().out
    b2 = _run_folder(tmp_path / "b2")
    assert main(["--compare", str(a), str(b2)]) == 0
