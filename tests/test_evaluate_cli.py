"""``python -m medcap_utils.evaluate``: JSON layout, pycocoevalcap names, validation exit codes."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from medcap_utils.data.rocov2 import read_captions, read_concepts
from medcap_utils.evaluate import evaluate_captions, main
from medcap_utils.runfiles import write_caption_run, write_concept_run


def test_captions_cli_coco(sample_dir, tmp_path):
    gt = read_captions(sample_dir / "test_captions.csv")
    pred = {i: " ".join(c.split()[:6]) for i, c in zip(gt.ID, gt.Caption)}
    run = write_caption_run(tmp_path / "run.csv", pred)
    out = tmp_path / "metrics.json"
    proc = subprocess.run([sys.executable, "-m", "medcap_utils.evaluate", "captions", "--gt",
                           str(sample_dir / "test_captions.csv"), "--pred", str(run), "--protocol", "coco",
                           "--metrics", "Bleu_1", "Bleu_4", "ROUGE_L", "CIDEr", "rouge1", "--bootstrap", "200",
                           "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert set(result["scores"]) == {"Bleu_1", "Bleu_4", "ROUGE_L", "CIDEr", "rouge1"}
    for name, value in result["scores"].items():
        assert result["ci"][name]["low"] <= value <= result["ci"][name]["high"], name
    assert result["provenance"]["counts"]["pairs"] == 93
    assert result["provenance"]["packages"]["pycocoevalcap"] == "1.2"
    side = tmp_path / "metrics"
    assert result["per_image"] == str(side / "per_image.csv")
    assert len((side / "hyps.txt").read_text().splitlines()) == 93 == len((side / "refs.txt").read_text().splitlines())


def test_invalid_run_exits_nonzero_with_line(sample_dir, tmp_path):
    gt = read_captions(sample_dir / "test_captions.csv")
    run = tmp_path / "run.csv"
    lines = ["ID,Caption"] + [f"{i},x" for i in gt.ID] + [f"{gt.ID[0]},again"]
    run.write_text("\n".join(lines) + "\n")
    proc = subprocess.run([sys.executable, "-m", "medcap_utils.evaluate", "captions", "--gt",
                           str(sample_dir / "test_captions.csv"), "--pred", str(run), "--out",
                           str(tmp_path / "m.json")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and f"line {len(lines)}" in proc.stderr and "repeated" in proc.stderr


def test_concepts_cli(sample_dir, tmp_path, capsys):
    gt = read_concepts(sample_dir / "test_concepts.csv")
    pred = {i: c[:1] for i, c in zip(gt.ID, gt.CUIs)}  # first CUI only: precision 1
    run = write_concept_run(tmp_path / "run.csv", pred)
    out = tmp_path / "m.json"
    code = main(["concepts", "--gt", str(sample_dir / "test_concepts.csv"), "--gt-manual",
                 str(sample_dir / "test_concepts.csv"), "--pred", str(run), "--out", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    expected = sum(2 * 1 / (len(c) + 1) for c in gt.CUIs if c) / sum(1 for c in gt.CUIs if c)
    assert result["scores"]["f1_primary"] == pytest.approx(expected)
    assert "f1_secondary" in result["scores"] and "f1_micro" in result["scores"]
    assert (tmp_path / "m" / "per_concept.csv").exists()


def test_imageclef2025_offline_is_partial_and_says_why():
    gt = {"a": "CT of the chest, 2 lesions.", "b": "...", "c": "MRI brain"}
    pred = {"a": "ct chest with number lesions", "b": "!", "c": "x-ray of the hand"}
    res = evaluate_captions(gt, pred, "imageclef2025", metrics=["bertscore_f1", "rouge1", "similarity"], bootstrap=0)
    assert "bertscore_f1" in res["unavailable"] and "similarity" in res["unavailable"]
    assert "relevance" not in res["scores"] and "relevance_partial" in res["scores"]
    missing = res["provenance"]["notes"]["combined"]["relevance"]["missing"]
    assert missing == ["bertscore_f1", "similarity"]
    # "..." / "!" are empty only after preprocessing: 2025 decides "both empty" on the raw texts
    assert res["per_image"].set_index("ID").loc["b", "rouge1"] == 0.0
    assert res["provenance"]["counts"]["both_empty"] == 0
