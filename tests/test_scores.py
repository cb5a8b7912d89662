"""medcap_utils.evaluation.scores: the one score row the notebooks' tables are built from, checked against
pycocoevalcap called directly (its own tokenizer and scorers) on a small hand-made set."""
import json
import math
import shutil

import pytest

from medcap_utils.evaluation.scores import MODALITY, notes_table, score_dataset, score_row, score_table

pytestmark = pytest.mark.skipif(shutil.which("java") is None, reason="pycocoevalcap's PTB tokenizer needs Java")

REFS = {"a": "axial ct of the chest shows a large mass in the right lung",
        "b": "chest x-ray with a small nodule in the left upper lobe",
        "c": "mri of the brain demonstrates a lesion in the frontal lobe",
        "d": "ultrasound of the liver shows a hypoechoic cyst"}
PREDS = {"a": "ct of the chest shows a mass in the right lung",
         "b": "x-ray of the chest with a nodule",
         "c": "brain mri shows a frontal lesion",
         "d": "ct of the abdomen shows a normal liver"}


def pycocoevalcap_direct(refs: dict, preds: dict) -> dict:
    """COCOEvalCap's own path: PTB tokenizer, then each scorer's compute_score."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tok = PTBTokenizer()
    gts = tok.tokenize({k: [{"caption": v}] for k, v in refs.items()})
    res = tok.tokenize({k: [{"caption": v}] for k, v in preds.items()})
    bleu, _ = Bleu(4).compute_score(gts, res)
    return {**{f"Bleu_{n + 1}": bleu[n] for n in range(4)}, "ROUGE_L": Rouge().compute_score(gts, res)[0],
            "CIDEr": Cider().compute_score(gts, res)[0]}


def test_score_row_equals_pycocoevalcap_called_directly():
    expected = pycocoevalcap_direct(REFS, PREDS)
    row = score_row(REFS, PREDS, metrics=["Bleu_1", "Bleu_4", "ROUGE_L", "CIDEr"])
    assert list(row) == ["Bleu_1", "Bleu_4", "ROUGE_L", "CIDEr"]  # the order asked for
    for name, value in row.items():
        assert value == pytest.approx(expected[name], abs=1e-12), name
    assert 0 < row["Bleu_4"] < row["Bleu_1"] < 1 and row["CIDEr"] > 0


def test_a_caption_moved_to_another_image_changes_the_scores():
    swapped = {**PREDS, "a": PREDS["c"], "c": PREDS["a"]}
    row, moved = score_row(REFS, PREDS, metrics=["CIDEr"]), score_row(REFS, swapped, metrics=["CIDEr"])
    assert moved["CIDEr"] == pytest.approx(pycocoevalcap_direct(REFS, swapped)["CIDEr"], abs=1e-12)
    assert moved["CIDEr"] < row["CIDEr"]


def test_bootstrap_changes_only_the_intervals_and_zero_works(tmp_path):
    none = score_row(REFS, PREDS, metrics=["Bleu_4", "ROUGE_L"], bootstrap=0)
    some = score_row(REFS, PREDS, metrics=["Bleu_4", "ROUGE_L"], bootstrap=20, out_dir=tmp_path)
    assert none == some
    written = json.loads((tmp_path / "scores.json").read_text())
    assert written["scores"]["Bleu_4"] == pytest.approx(some["Bleu_4"])
    assert written["ci"]["Bleu_4"]["n_boot"] == 20 and written["ci"]["Bleu_4"]["low"] <= some["Bleu_4"]


def test_default_metrics_modality_and_names():
    row = score_row(REFS, PREDS, modalities=["CT", "X-ray", "MRI", "Ultrasound"], names={MODALITY: "mod"})
    assert list(row)[:4] == ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4"] and "rouge1" in row
    # "ct", "x-ray", "mri" named, the ultrasound image called a ct
    assert row["mod"] == pytest.approx(3 / 4)
    assert MODALITY not in row


def test_unavailable_metric_is_nan_with_its_reason(monkeypatch):
    from medcap_utils.metrics import coco

    monkeypatch.setattr(coco.shutil, "which", lambda name: None)  # as on a machine without Java
    notes: dict = {}
    row = score_row(REFS, PREDS, metrics=["rouge1", "Bleu_4"], notes=notes)
    assert row["rouge1"] > 0 and math.isnan(row["Bleu_4"])
    assert "java" in notes["Bleu_4"] and "rouge1" not in notes
    table = notes_table(row, notes)
    assert list(table["metric"]) == ["rouge1", "Bleu_4"]
    assert table.loc[1, "note"].startswith("unavailable: ") and table.loc[0, "note"] == ""


def test_score_dataset_and_table():
    class Split:
        ids, captions, modalities = list(REFS), list(REFS.values()), ["CT", "X-ray", "MRI", "Ultrasound"]

    rows = [{"model": "copy", **score_dataset(Split, dict(REFS), metrics=["Bleu_4"])},
            {"model": "ours", **score_dataset(Split, PREDS, metrics=["Bleu_4"])}]
    table = score_table(rows)
    assert list(table.columns) == ["model", "Bleu_4", MODALITY]
    assert table.loc[0, "Bleu_4"] == pytest.approx(1.0) and table.loc[0, MODALITY] == 1.0
    assert table.loc[1, "Bleu_4"] == pytest.approx(pycocoevalcap_direct(REFS, PREDS)["Bleu_4"], abs=1e-12)
