"""Notebook ``05_concept_detection_medcsra``'s steps (seed 002, UIT-Oggy 2025, section 5.2): reading the MedCSRA
recipe, the class table, the validation threshold with the paper's choice beside it, the per-concept table and what
the attention figure shows (its rows, classes, titles and the demo's finding boxes), and the branch ablation (each
branch alone, trained with the two-branch model's recipe).

Only notebook 05 reads ``configs/recipes/medcsra-2025.yaml``, so its reader lives here; the data, training and
thresholding are :mod:`medcap_utils.training.medcsra`, the figures :mod:`medcap_utils.analysis.medcsra_maps`.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from medcap_utils.analysis.medcsra_maps import top_class
from medcap_utils.data.rocov2 import MODALITY_CUIS
from medcap_utils.evaluation.evaluate import evaluate_concepts
from medcap_utils.evaluation.runfiles import write_run_dir
from medcap_utils.metrics.concepts import per_concept_table
from medcap_utils.paths import resolve
from medcap_utils.training import medcsra as cd

#: the threshold seed 002 chose on its validation sweep (section 5.2.4)
PAPER_THRESHOLD = 0.35
#: the demo generator's finding boxes (real ROCOv2 has none) and their columns
DEMO_TRUTH = "test_demo_truth.csv"
#: the single-branch models of the ablation (the two-branch model is notebook 05's main one)
ABLATION_BRANCHES = ("global", "attention")
BOX_COLUMNS = ["bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1"]


def load_recipe(path: str | Path, variant: str = "paper") -> dict:
    """The MedCSRA recipe for ``variant``: ``"paper"``, ``"authors_code"`` (the authors' code over paper) or
    ``"demo"`` (the demo section over paper), read by :func:`medcap_utils.training.recipe.read_recipe`.

    Every section comes back as a dict of the keys given; ``train`` also carries ``recipe_hash`` (so
    ``TrainConfig.from_dict(recipe["train"])`` records it), and ``recipe_hash`` is on top too.
    """
    from medcap_utils.training.recipe import RecipeError, read_recipe
    from medcap_utils.training.recipe_schema import MedcsraRecipe

    if variant not in ("paper", "authors_code", "demo"):
        raise RecipeError(f"{path}: variant: expected 'paper', 'authors_code' or 'demo', found {variant!r}")
    recipe = read_recipe(resolve(path), MedcsraRecipe, profile="demo" if variant == "demo" else "rocov2",
                         variant=None if variant == "demo" else variant, train_as="mapping")
    return recipe


def class_table(classes, names: dict) -> pd.DataFrame:
    """The concepts MedCSRA predicts, with their names and how many training images carry each."""
    return pd.DataFrame({"cui": classes.cuis, "name": [names.get(c, "") for c in classes.cuis],
                         "train_images": classes.counts})


def choose_threshold(run, classes, recipe: dict, probs_valid):
    """The validation sweep ``(curve, threshold, threshold_micro)``: the threshold of the best per-image F1 (the
    official score) and the one micro-F1 would choose, printed beside the paper's."""
    curve = cd.threshold_curve(probs_valid, run.valid.ids, classes.cuis, run.valid.ground_truth(),
                               recipe.get("thresholds", cd.THRESHOLDS))
    threshold = cd.best_threshold(curve, "f1_per_image")
    threshold_micro = cd.best_threshold(curve, "f1_micro")
    print(f"chosen threshold {threshold:.2f} (micro-F1 would choose {threshold_micro:.2f}; "
          f"the paper chose {PAPER_THRESHOLD})")
    return curve, threshold, threshold_micro


def top_concepts_table(test, predictions: dict, classes, names: dict, n: int) -> pd.DataFrame:
    """Test precision, recall and F1 of the ``n`` most frequent training concepts, with their names."""
    per_concept = per_concept_table(test.ground_truth(), predictions).set_index("cui")
    top = per_concept.reindex(classes.cuis[:n]).fillna(0).reset_index()
    top.insert(1, "name", [names.get(c, "") for c in top["cui"]])
    return top


def attention_panels(root: Path, test, probs_test, classes, names: dict, n: int):
    """What the attention figure shows for the first ``n`` test images: ``(rows, classes, titles, boxes)``; each
    map is of the image's most probable non-modality concept, its box the demo's finding box (None on real data)."""
    rows_shown = list(range(min(n, len(test))))
    local = [k for k, c in enumerate(classes.cuis) if c not in MODALITY_CUIS] or None
    top_classes = [top_class(probs_test, r, local) for r in rows_shown]
    truth = test.ground_truth()
    titles = [f"map of: {names.get(classes.cuis[k], classes.cuis[k])} (p={probs_test[r, k]:.2f}) | truth: "
              + ", ".join(names.get(c, c) for c in truth[test.ids[r]]) for r, k in zip(rows_shown, top_classes)]
    truth_path = root / DEMO_TRUTH
    demo_truth = pd.read_csv(truth_path).set_index("ID") if truth_path.exists() else None
    boxes = [tuple(demo_truth.loc[test.ids[r], BOX_COLUMNS]) if demo_truth is not None else None for r in rows_shown]
    return rows_shown, top_classes, titles, boxes


def branch_ablation(root: Path, recipe: dict, model_dir: str, run_name: str, data_dir: str, test, both: dict,
                    **train_overrides) -> pd.DataFrame:
    """Seed 002's two-branch model against each branch alone: every single-branch model is trained with the
    two-branch model's recipe (only ``model.branches`` differs; saved beside it as ``<model_dir>-<branch>`` and
    reused by the same rule), its threshold chosen by the same validation sweep (per-image F1), and its test
    concepts written as run ``<run_name>-<branch>-test``. ``both``: the two-branch model's ``threshold``,
    ``predictions`` (test) and ``seconds``. One row per model: per-image F1 (mean, the official score), micro-F1."""
    gt, gt_manual = test.ground_truth(), test.ground_truth("cuis_manual")
    rows = [{"branches": "both (paper)", "threshold": both["threshold"],
             **_scores(gt, both["predictions"], gt_manual), "train_s": both["seconds"], "run": f"{run_name}-test"}]
    for branch in ABLATION_BRANCHES:
        single = {**recipe, "model": {**recipe["model"], "branches": branch}}
        run = cd.train_medcsra(root, single, output_dir=f"{model_dir}-{branch}", **train_overrides)
        probs_valid = cd.predict_probs(run.model, run.valid, run.recipe)
        curve = cd.threshold_curve(probs_valid, run.valid.ids, run.classes.cuis, run.valid.ground_truth(),
                                   recipe.get("thresholds", cd.THRESHOLDS))
        threshold = cd.best_threshold(curve, "f1_per_image")
        predictions = cd.probs_to_concepts(cd.predict_probs(run.model, test, run.recipe), test.ids,
                                           run.classes.cuis, threshold)
        name = f"{run_name}-{branch}-test"
        write_run_dir(name, "concepts", "test", data_dir, predictions,
                      {"model": "MedCSRA", "branches": branch, "head": recipe["model"].get("head"),
                       "threshold": threshold, "classes": len(run.classes), "best_epoch": run.best.get("epoch"),
                       "model_dir": f"{model_dir}-{branch}"})
        rows.append({"branches": f"{branch} only", "threshold": threshold, **_scores(gt, predictions, gt_manual),
                     "train_s": run.wall_time_s, "run": name})
    return pd.DataFrame(rows)


def _scores(gt: dict, predictions: dict, gt_manual: dict) -> dict:
    result = evaluate_concepts(gt, predictions, gt_manual)
    scores, ci = result["scores"], result["ci"].get("f1_primary", {})
    return {"per-image F1 (mean)": scores["f1_primary"],
            "per-image F1 95% CI": f"[{ci.get('low', float('nan')):.3f}, {ci.get('high', float('nan')):.3f}]",
            "micro-F1": scores["f1_micro"]}
