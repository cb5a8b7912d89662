"""Notebook 08's helpers: baseline runs, scoring every run directory, invalid runs reported."""
from __future__ import annotations

import numpy as np
import pytest

from medcap_utils.data.rocov2 import read_captions, read_concepts
from medcap_utils.evaluation import evaluate_runs
from medcap_utils.evaluation.runfiles import write_run_dir


def test_baselines_and_all_runs(demo_root, tmp_path):
    runs = tmp_path / "runs"
    made = evaluate_runs.make_baseline_runs(str(demo_root), "test", 2, runs)
    assert [p.name for p in made] == ["baseline-most-frequent-caption", "baseline-top2-concepts",
                                      "baseline-consensus-caption", "baseline-nn-pixels"]
    test_ids = list(read_captions(demo_root / "test_captions.csv").ID)
    truth = dict(zip(read_captions(demo_root / "test_captions.csv").ID,
                     read_captions(demo_root / "test_captions.csv").Caption))
    write_run_dir("oracle", "captions", "test", str(demo_root), truth, runs_root=runs)
    write_run_dir("broken", "captions", "test", str(demo_root), {test_ids[0]: "x"}, runs_root=runs)  # IDs missing
    table, per_image = evaluate_runs.evaluate_all_runs(runs, protocols=("coco",), n_boot=100,
                                                       metrics=["Bleu_1", "ROUGE_L", "rouge1"])
    ok = table[table.status == "ok"].set_index(["run", "metric"]).value
    assert ok["oracle", "ROUGE_L"] == pytest.approx(1.0) and ok["oracle", "rouge1"] == pytest.approx(1.0)
    assert ok["baseline-most-frequent-caption", "rouge1"] < 0.9
    assert table.set_index("run").loc["broken", "status"] == "invalid"
    concepts = read_concepts(demo_root / "test_concepts.csv")
    assert 0 < ok["baseline-top2-concepts", "f1_primary"] < 1 and len(concepts) == len(test_ids)
    paired = evaluate_runs.paired_against(per_image, "baseline-most-frequent-caption", "coco", "rouge1", 200)
    row = paired.set_index("run").loc["oracle"]
    assert row["diff"] > 0 and row["low"] > 0 and row["p_value"] < 0.05
    per_image_metrics = table[(table.status == "ok") & ~table.metric.isin(["f1_micro", "f1_macro"])]
    assert np.isfinite(per_image_metrics.ci_low).all()  # every per-image metric carries a CI


def test_declared_subset_run_is_scored_on_its_images(demo_root, tmp_path):
    runs = tmp_path / "runs"
    frame = read_captions(demo_root / "test_captions.csv")
    truth = dict(zip(frame.ID[:10], frame.Caption[:10]))
    write_run_dir("subset", "captions", "test", str(demo_root), truth, meta={"subset": True}, runs_root=runs)
    write_run_dir("undeclared", "captions", "test", str(demo_root), truth, runs_root=runs)
    table, per_image = evaluate_runs.evaluate_all_runs(runs, protocols=("coco",), n_boot=50, metrics=["rouge1"])
    by_run = table.set_index("run")
    assert by_run.loc["undeclared", "status"] == "invalid"  # the official rule: every ID of the split
    subset = table[(table.run == "subset") & (table.metric == "rouge1")].iloc[0]
    assert subset.status == "ok" and subset.value == pytest.approx(1.0) and subset.n == 10
    assert "subset: 10 of 40 images" in subset.note
    assert len(per_image["subset"]["coco"]) == 10
