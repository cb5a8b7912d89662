"""Collapse and image use (medcap_utils.evaluation.caption_use), the retrieval baselines, and that a collapsed run is
never ranked (issue 17, items 3 and 4)."""
from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from medcap_utils.data.cache import get_image_cache
from medcap_utils.data.rocov2 import read_captions
from medcap_utils.evaluation import beat_baselines, caption_use, evaluate_runs, run_summary
from medcap_utils.evaluation.baselines import consensus_caption, nearest_neighbour_captions, pixel_features
from medcap_utils.evaluation.runfiles import write_run_dir

needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="the PTB tokenizer needs Java")


@pytest.fixture(scope="module")
def test_refs(demo_root) -> dict:
    frame = read_captions(demo_root / "test_captions.csv")
    return dict(zip(frame.ID, frame.Caption))


def test_constant_captions_are_one_distinct_and_collapsed():
    counts = caption_use.caption_counts(["the same caption"] * 40)
    assert counts["distinct captions"] == 1 and counts["most common share"] == 1.0 and counts["collapsed"]
    assert counts["distinct / images"] == pytest.approx(1 / 40)


def test_the_half_rule_boundary():
    assert caption_use.COLLAPSED_SHARE == 0.5
    half = caption_use.caption_counts(["a"] * 5 + ["b", "c", "d", "e", "f"])
    below = caption_use.caption_counts(["a"] * 4 + ["b", "c", "d", "e", "f", "g"])
    assert half["most common share"] == 0.5 and half["collapsed"]
    assert below["most common share"] == 0.4 and not below["collapsed"]


def test_run_folders_use_the_same_rule(tmp_path, demo_root, test_refs):
    ids = list(test_refs)
    half = {i: "a" if n < len(ids) // 2 else f"caption {n}" for n, i in enumerate(ids)}
    under = {i: "a" if n < len(ids) // 2 - 1 else f"caption {n}" for n, i in enumerate(ids)}
    write_run_dir("half", "captions", "test", str(demo_root), half, runs_root=tmp_path)
    write_run_dir("under", "captions", "test", str(demo_root), under, runs_root=tmp_path)
    table = run_summary.distinct_captions(tmp_path).set_index("run")
    assert table.loc["half", "collapsed"] and not table.loc["under", "collapsed"]


def test_derangement_moves_every_caption():
    source = caption_use.derangement(50, seed=3)
    assert sorted(source) == list(range(50)) and not (source == np.arange(50)).any()
    assert (source == caption_use.derangement(50, seed=3)).all()


@needs_java
def test_shuffle_drop_is_zero_for_a_constant_and_positive_for_copied_references(test_refs):
    constant = {i: "Axial CT of the chest with a nodule in the left lung." for i in test_refs}
    drops = caption_use.shuffle_drop(test_refs, {"constant": constant, "copy": dict(test_refs)}, seed=0)
    assert drops["copy"]["BLEU-4"] == pytest.approx(1.0)
    for metric in ("BLEU-4", "CIDEr"):
        assert drops["constant"][f"{metric} drop"] == 0.0
        assert drops["copy"][f"{metric} drop"] > 0.1 * drops["copy"][metric]


@needs_java
def test_caption_use_table_covers_every_caption_run(tmp_path, demo_root, test_refs):
    write_run_dir("copy", "captions", "test", str(demo_root), dict(test_refs), runs_root=tmp_path)
    write_run_dir("constant", "captions", "test", str(demo_root), {i: "x-ray" for i in test_refs}, runs_root=tmp_path)
    write_run_dir("concepts", "concepts", "test", str(demo_root), {i: ["C1"] for i in test_refs}, runs_root=tmp_path)
    table = caption_use.caption_use_table(tmp_path).set_index("run")
    assert list(table.index) == ["constant", "copy"]
    assert table.loc["constant", "collapsed"] and table.loc["constant", "CIDEr drop"] == 0
    assert not table.loc["copy", "collapsed"] and table.loc["copy", "CIDEr drop"] > 0


def test_consensus_picks_the_caption_most_like_the_others():
    captions = ["x y z", "a b c d", "a b", "a b c", "a b c e"]
    # token F1 of "a b c" with the others: 0, 6/7, 4/5, 6/7 -> mean 0.63, the highest ("a b c d": 0.57)
    assert consensus_caption(captions) == "a b c"
    assert consensus_caption(captions, n_reference=500, n_candidates=2) in captions


def test_nearest_neighbour_returns_the_duplicated_training_image_caption():
    rng = np.random.default_rng(0)
    train = rng.random((30, 12)).astype(np.float32)
    captions = [f"caption {i}" for i in range(30)]
    test = np.vstack([train[17], train[4] + 1e-4])
    assert nearest_neighbour_captions(train, captions, test) == ["caption 17", "caption 4"]
    assert nearest_neighbour_captions(train, captions, test, metric="cosine") == ["caption 17", "caption 4"]
    with pytest.raises(ValueError):
        nearest_neighbour_captions(train, captions[:-1], test)


def test_pixel_retrieval_finds_an_identical_image(demo_root):
    ids, feats = pixel_features(demo_root, "train", size=16, cache_size=64)
    frame = read_captions(demo_root / "train_captions.csv")
    by_id = dict(zip(frame.ID, frame.Caption))
    captions = [by_id[i] for i in ids]
    found = nearest_neighbour_captions(feats, captions, feats[[3, 11, 200]])
    assert found == [captions[3], captions[11], captions[200]]
    image = get_image_cache(demo_root, "train", 64)[ids[5]]  # each feature: the mean of a 4 x 4 pixel block
    assert feats.shape == (len(ids), 16 * 16 * 3)
    assert np.allclose(feats[5], (image.reshape(16, 4, 16, 4, 3).mean(axis=(1, 3)) / 255).ravel(), atol=1e-6)


def _table(values: dict) -> pd.DataFrame:
    rows = [{"run": run, "task": "captions", "split": "test", "protocol": p, "metric": m, "value": v, "ci_low": v,
             "ci_high": v, "n": 10, "status": "ok", "note": ""}
            for run, v in values.items() for (p, m) in run_summary.CAPTION_HEADLINE]
    return pd.DataFrame(rows)


def test_a_collapsed_run_is_never_the_best():
    table = _table({"medblip_blip_full": 0.9, "medblip_blip_decoder_only": 0.2, "06_msmedcap_dual": 0.8})
    distinct = pd.DataFrame({"run": ["medblip_blip_full", "medblip_blip_decoder_only", "06_msmedcap_dual"],
                             "images": 10, "distinct captions": [1, 9, 2], "most common share": [1.0, 0.1, 0.6],
                             "collapsed": [True, False, True]})
    summary = run_summary.caption_summary(table, distinct).set_index("notebook")
    best = dict(zip(summary.index.str[:2], summary["best run"]))
    assert best["03"].startswith("medblip_blip_decoder_only")
    assert best["06"].startswith("none") and "06_msmedcap_dual" not in summary.attrs["runs"]
    assert "medblip_blip_full" in summary.attrs["note"] and "06_msmedcap_dual" in summary.attrs["note"]


@needs_java
def test_retrieval_verdicts_need_a_clear_margin_and_skip_collapsed_runs(tmp_path, demo_root, test_refs):
    ids = list(test_refs)
    moved = {i: test_refs[ids[(n + 1) % len(ids)]] for n, i in enumerate(ids)}  # another image's caption
    write_run_dir("xai-lstm-demo", "captions", "test", str(demo_root), dict(test_refs), runs_root=tmp_path)
    write_run_dir("blip_demo_test", "captions", "test", str(demo_root), {i: "x-ray" for i in ids}, runs_root=tmp_path)
    write_run_dir("baseline-nn-pixels", "captions", "test", str(demo_root), moved, runs_root=tmp_path)
    write_run_dir("baseline-consensus-caption", "captions", "test", str(demo_root), {i: test_refs[ids[0]] for i in ids},
                  runs_root=tmp_path)
    table, per_image = evaluate_runs.evaluate_all_runs(tmp_path, protocols=("coco",), n_boot=200,
                                                       metrics=["Bleu_4", "CIDEr"])
    verdicts = beat_baselines.compare(table, per_image, run_summary.distinct_captions(tmp_path), n_boot=200)
    sentences = verdicts.attrs["sentences"]
    assert sentences[0].startswith("02") and "collapsed" in sentences[0] and "blip_demo_test" not in set(verdicts.run)
    assert "xai-lstm-demo beats both retrieval baselines" in sentences[1]
    assert verdicts["clear margin"].all() and len(verdicts) == 4
    # the same run against itself as the nearest neighbour: no margin, and the sentence says so
    write_run_dir("baseline-nn-pixels", "captions", "test", str(demo_root), dict(test_refs), runs_root=tmp_path)
    table, per_image = evaluate_runs.evaluate_all_runs(tmp_path, protocols=("coco",), n_boot=200,
                                                       metrics=["Bleu_4", "CIDEr"])
    verdicts = beat_baselines.compare(table, per_image, run_summary.distinct_captions(tmp_path), n_boot=200)
    assert "does not beat the retrieval baselines" in verdicts.attrs["sentences"][1]


@needs_java
def test_caption_use_of_named_runs_matches_the_whole_folder_table_and_ranking_skips_collapsed(tmp_path, demo_root,
                                                                                           test_refs, capsys):
    ids = list(test_refs)
    write_run_dir("copy", "captions", "test", str(demo_root), dict(test_refs), runs_root=tmp_path)
    write_run_dir("constant", "captions", "test", str(demo_root), {i: "x-ray" for i in ids}, runs_root=tmp_path)
    write_run_dir("other", "captions", "test", str(demo_root), {i: f"caption {n}" for n, i in enumerate(ids)},
                  runs_root=tmp_path)
    use = caption_use.caption_use_of_runs(["constant", "copy"], runs_root=tmp_path)
    assert list(use["run"]) == ["constant", "copy"] and list(use.columns) == caption_use.COLUMNS
    whole = caption_use.caption_use_table(tmp_path).set_index("run").loc[["constant", "copy"]].reset_index()
    pd.testing.assert_frame_equal(use, whole)
    by_run = use.set_index("run")
    assert by_run.loc["constant", "collapsed"] and by_run.loc["copy", "BLEU-4"] == pytest.approx(1.0)
    assert caption_use.ranked_runs(use, ["copy", "constant"]) == ["copy"]
    assert "left out of the ranking as collapsed" in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match="missing"):
        caption_use.caption_use_of_runs(["copy", "missing"], runs_root=tmp_path)
