"""``python -m medcap_utils.evaluation.evaluate``: JSON layout, pycocoevalcap names, validation exit codes."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from medcap_utils.data.rocov2 import read_captions, read_concepts
from medcap_utils.evaluation.evaluate import evaluate_captions, main
from medcap_utils.evaluation.runfiles import write_caption_run, write_concept_run


def test_captions_cli_coco(sample_dir, tmp_path):
    gt = read_captions(sample_dir / "test_captions.csv")
    pred = {i: " ".join(c.split()[:6]) for i, c in zip(gt.ID, gt.Caption)}
    run = write_caption_run(tmp_path / "run.csv", pred)
    out = tmp_path / "metrics.json"
    proc = subprocess.run([sys.executable, "-m", "medcap_utils.evaluation.evaluate", "captions", "--gt",
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
    proc = subprocess.run([sys.executable, "-m", "medcap_utils.evaluation.evaluate", "captions", "--gt",
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


# --- every CLI flag changes what the result says (in-process: one model load per test) ---------------

def _small_gt(tmp_path, sample_dir, n=4):
    lines = (sample_dir / "test_captions.csv").read_text(encoding="utf-8").splitlines()[: n + 1]
    path = tmp_path / "gt.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    gt = read_captions(path)
    return path, dict(zip(gt.ID, gt.Caption))


def _run(argv, out):
    code = main(argv + ["--bootstrap", "0", "--out", str(out)])
    return code, (json.loads(out.read_text()) if out.exists() else None)


def test_clip_model_flag_reaches_clipscore(sample_dir, tmp_path, monkeypatch):
    from medcap_utils.metrics import clipscore

    gt_path, gt = _small_gt(tmp_path, sample_dir)
    images = tmp_path / "images"
    images.mkdir()
    for i in gt:
        (images / f"{i}.jpg").write_bytes(b"not read by the stub")
    used = []

    def fake_clip_scores(paths, cands, refs, model_id, device=None, batch_size=32):
        used.append(model_id)
        n = len(cands)
        return {"clip_s": np.full(n, 0.5), "refclip_s": np.full(n, 0.6), "n_truncated": 0, "model_id": model_id,
                "revision": None}

    monkeypatch.setattr(clipscore, "clip_scores", fake_clip_scores)
    run = write_caption_run(tmp_path / "run.csv", gt)
    base = ["captions", "--gt", str(gt_path), "--pred", str(run), "--protocol", "imageclef2024",
            "--metrics", "clipscore", "--images", str(images)]
    code, default = _run(base, tmp_path / "a.json")
    assert code == 0 and used == [clipscore.DEFAULT_CLIP]
    code, chosen = _run(base + ["--clip-model", "/models/my-clip"], tmp_path / "b.json")
    assert code == 0 and used[-1] == "/models/my-clip"
    assert chosen["provenance"]["models"]["clipscore"]["model_id"] == "/models/my-clip"
    assert default["provenance"]["models"]["clipscore"]["model_id"] == clipscore.DEFAULT_CLIP


def test_bertscore_model_and_layers_flags(sample_dir, tmp_path, capsys):
    from medcap_utils.metrics import bertscore as bs

    gt_path, gt = _small_gt(tmp_path, sample_dir)
    pred = {i: " ".join(c.split()[::2]) for i, c in gt.items()}
    run = write_caption_run(tmp_path / "run.csv", pred)
    base = ["captions", "--gt", str(gt_path), "--pred", str(run), "--protocol", "imageclef2024",
            "--metrics", "bertscore_f1", "--bertscore-model", bs.minilm_path()]
    code, no_layers = _run(base, tmp_path / "a.json")
    assert code == 0 and "--bertscore-layers" in no_layers["unavailable"]["bertscore_f1"]
    code, six = _run(base + ["--bertscore-layers", "6"], tmp_path / "b.json")
    assert code == 0 and "bertscore_f1" in six["scores"]
    assert six["provenance"]["models"]["bertscore_f1"]["num_layers"] == 6
    code, three = _run(base + ["--bertscore-layers", "3"], tmp_path / "c.json")
    assert three["provenance"]["models"]["bertscore_f1"]["num_layers"] == 3
    assert abs(three["scores"]["bertscore_f1"] - six["scores"]["bertscore_f1"]) > 1e-4
    # --clip-model beside --bertscore-model used to land in bertscore_num_layers and crash
    code, mixed = _run(base + ["--bertscore-layers", "6", "--clip-model", "6"], tmp_path / "d.json")
    assert code == 0 and mixed["scores"]["bertscore_f1"] == pytest.approx(six["scores"]["bertscore_f1"], abs=1e-6)


def test_concepts_protocol_flag_picks_the_secondary_list(tmp_path):
    ids = ["ROCOv2_2023_test_000001", "ROCOv2_2023_test_000002"]
    gt = tmp_path / "gt.csv"
    gt.write_text(f"ID,CUIs\n{ids[0]},C0920367\n{ids[1]},C0040405\n")
    run = write_concept_run(tmp_path / "run.csv", {ids[0]: ["C0920367"], ids[1]: ["C0920367", "C0040405"]})
    base = ["concepts", "--gt", str(gt), "--gt-manual", str(gt), "--pred", str(run)]
    _, y25 = _run(base, tmp_path / "a.json")
    _, y24 = _run(base + ["--protocol", "imageclef2024"], tmp_path / "b.json")
    assert y25["scores"]["f1_secondary"] == pytest.approx((1 + 2 / 3) / 2)  # OCT allowed
    assert y24["scores"]["f1_secondary"] == pytest.approx(1.0)  # OCT not in the 14-CUI list
    assert "14 allowed CUIs of 2024" in y24["provenance"]["notes"]["secondary"]


def test_non_utf8_run_exits_2_naming_file_and_line(sample_dir, tmp_path, capsys):
    gt_path, gt = _small_gt(tmp_path, sample_dir, n=3)
    ids = list(gt)
    run = tmp_path / "run.csv"
    run.write_bytes(f"ID,Caption\n{ids[0]},a\n".encode() + ids[1].encode() + b",caf\xe9\n" + f"{ids[2]},c\n".encode())
    code = main(["captions", "--gt", str(gt_path), "--pred", str(run), "--metrics", "rouge1", "--bootstrap", "0",
                 "--out", str(tmp_path / "m.json")])
    err = capsys.readouterr().err
    assert code == 2 and f"{run}: line 3:" in err and "UTF-8" in err
