"""Evaluate caption or concept predictions: Python API and ``python -m medcap_utils.evaluation.evaluate``.

    python -m medcap_utils.evaluation.evaluate captions --gt GT.csv --pred RUN.csv \\
        --protocol coco|imageclef2024|imageclef2025 [--images DIR] [--metrics ...] \\
        [--clip-model ID|DIR] [--bertscore-model ID|DIR --bertscore-layers N] --out metrics.json
    python -m medcap_utils.evaluation.evaluate concepts --gt concepts.csv [--gt-manual concepts_manual.csv] \\
        [--protocol imageclef2024|imageclef2025] --pred RUN.csv --out metrics.json

The result has ``scores`` (COCO metrics under pycocoevalcap's names, concept scores as
``f1_primary`` / ``f1_secondary``), ``ci`` (bootstrap 95% over images), ``per_image`` (a table, or
the path of its CSV when written to disk), ``unavailable`` (metric -> reason) and ``provenance``.
With ``out_dir`` the references, hypotheses, per-image scores and scores are written as files too.
A run file or ground truth that fails validation (including bytes that are not UTF-8, a repeated
ID, a malformed row, an empty reference caption) exits with status 2, naming the file and the line;
outputs that cannot be written (a full disk) exit with status 1. Every output file is written
atomically: complete or absent. The rules, year by year, are in docs/evaluation.md. Used by notebook 08.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from medcap_utils.atomic import atomic_write_text
from medcap_utils.metrics import MetricUnavailable
from medcap_utils.metrics import bootstrap as bt
from medcap_utils.metrics.provenance import provenance

CAPTION_PROTOCOLS = ("coco", "imageclef2024", "imageclef2025")
CONCEPT_PROTOCOLS = ("imageclef2024", "imageclef2025")


def image_paths_for(ids: list, images) -> list[str] | None:
    """Aligned image paths from a directory (``{dir}/{id}.jpg|.png``) or a ``{id: path}`` mapping."""
    if images is None:
        return None
    if isinstance(images, dict):
        return [str(images[i]) for i in ids]
    from medcap_utils.data.files import regular_file_problem

    root = Path(images)
    paths = []
    for i in ids:
        candidates = [root / f"{i}{ext}" for ext in (".jpg", ".jpeg", ".png") if (root / f"{i}{ext}").exists()]
        found = next((c for c in candidates if regular_file_problem(c) is None), None)
        if found is None:  # a FIFO named like an image would block CLIP's reader for ever: never opened
            why = "; ".join(f"{c.name} is {regular_file_problem(c)}" for c in candidates)
            raise FileNotFoundError(f"no image file for {i} under {root}" + (f" ({why})" if why else ""))
        paths.append(str(found))
    return paths


def _coco_part(ids, gt, pred, metrics, n_boot, seed, counts):
    from medcap_utils.metrics import coco
    from medcap_utils.metrics.imageclef import preprocess
    from medcap_utils.metrics.rouge1 import rouge1_f

    wanted = list(coco.LEXICAL) + ["rouge1"] if metrics is None else list(metrics)
    coco_metrics = [m for m in wanted if m in coco.ALL]
    out = {"scores": {}, "per_image": {}, "ci": {}, "unavailable": {}, "notes": {}}
    if coco_metrics:
        try:
            res = coco.coco_evaluate({i: [gt[i]] for i in ids}, {i: pred[i] for i in ids}, coco_metrics)
        except MetricUnavailable as err:
            out["unavailable"].update({m: str(err) for m in coco_metrics})
        else:
            out["scores"].update(res.scores)
            out["per_image"].update(res.per_image)
            out["unavailable"].update(res.unavailable)
            out["notes"]["line_breaks_replaced_before_ptb"] = res.n_line_breaks_replaced
            for m in res.scores:
                if m.startswith("Bleu") and res.bleu_stats is not None:
                    n = int(m[-1]) - 1
                    out["ci"][m] = bt.bootstrap_ci_stat(
                        lambda w, n=n: coco.corpus_bleu_from_stats(res.bleu_stats, w)[:, n],
                        len(ids), res.scores[m], n_boot, seed, counts=counts)
                    out["ci"][m]["method"] = "corpus BLEU recomputed per resample"
    if "rouge1" in wanted:
        out["per_image"]["rouge1"] = rouge1_f([preprocess(gt[i]) for i in ids], [preprocess(pred[i]) for i in ids])
        out["scores"]["rouge1"] = float(out["per_image"]["rouge1"].mean())
        out["notes"]["rouge1"] = "rouge_score rouge1 F, no stemmer, on ImageCLEF-preprocessed text"
    return out


def evaluate_captions(gt: dict, pred: dict, protocol: str = "coco", metrics=None, images=None,
                      bootstrap: int = bt.N_BOOT, seed: int = 0, out_dir=None, device: str | None = None,
                      clip_model: str | None = None, bertscore_model: str | None = None,
                      bertscore_layers: int | None = None, verbose: bool = False) -> dict:
    """Score captions ``pred`` {id: str} against ``gt`` {id: str} (the images are ``gt``'s keys).

    ``protocol``: ``coco`` (pycocoevalcap + ImageCLEF ROUGE-1) or an ImageCLEF year; ``bootstrap``:
    number of resamples for the CIs (0 = none). ``bertscore_model`` may be a local directory, then
    ``bertscore_layers`` says which layer's embeddings to use. Returns scores, ci, per_image,
    unavailable, provenance.
    """
    if protocol not in CAPTION_PROTOCOLS:
        raise ValueError(f"protocol must be one of {CAPTION_PROTOCOLS}")
    ids = list(gt)
    missing = [i for i in ids if i not in pred]
    if missing:
        raise ValueError(f"{len(missing)} image(s) without a prediction, e.g. {missing[:3]}")
    extra = set(pred) - set(gt)
    if extra:
        raise ValueError(f"{len(extra)} prediction(s) for unknown images, e.g. {sorted(extra)[:3]}")
    counts = bt.resample_counts(len(ids), bootstrap, seed) if bootstrap and ids else None
    models = {}
    if protocol == "coco":
        out = _coco_part(ids, gt, pred, metrics, bootstrap, seed, counts)
        extra_counts = {"pairs": len(ids), "empty_candidates": sum(not str(pred[i]).strip() for i in ids),
                        "empty_references": sum(not str(gt[i]).strip() for i in ids)}
    else:
        from medcap_utils.metrics import bertscore as bs
        from medcap_utils.metrics.imageclef import evaluate_imageclef

        res = evaluate_imageclef([gt[i] for i in ids], [pred[i] for i in ids], protocol, metrics=metrics,
                                 image_paths=image_paths_for(ids, images),
                                 bertscore_model=bertscore_model or bs.OFFICIAL_MODEL,
                                 bertscore_num_layers=bertscore_layers, clip_model=clip_model,
                                 device=device, verbose=verbose)
        out = {"scores": res["scores"], "per_image": res["per_image"], "ci": {}, "unavailable": res["unavailable"],
               "notes": {**res["notes"], "combined": res["combined"]}}
        extra_counts = res["counts"]
    for name, values in out["per_image"].items():
        if name not in out["ci"] and counts is not None:
            out["ci"][name] = bt.bootstrap_ci(values, bootstrap, seed, counts=counts)
            if name == "METEOR":
                out["ci"][name]["method"] = "mean of per-segment METEOR (Java pools its own corpus statistics)"
    for name, note in out["notes"].items():
        if isinstance(note, dict) and ("model_type" in note or "model_id" in note):
            models[name] = note
    table = pd.DataFrame({"ID": ids, "reference": [gt[i] for i in ids], "hypothesis": [pred[i] for i in ids],
                          **{k: np.asarray(v) for k, v in out["per_image"].items()}})
    result = {"task": "captions", "protocol": protocol, "scores": out["scores"], "ci": out["ci"],
              "unavailable": out["unavailable"], "per_image": table,
              "provenance": provenance(protocol=protocol, metrics=metrics or "default", models=models,
                                       counts=extra_counts, notes=out["notes"], bootstrap=bootstrap, seed=seed)}
    if out_dir is not None:
        write_outputs(result, out_dir, texts=True)
    return result


def evaluate_concepts(gt: dict, pred: dict, gt_manual: dict | None = None, bootstrap: int = bt.N_BOOT,
                      seed: int = 0, out_dir=None, protocol: str = "imageclef2025") -> dict:
    """Official primary/secondary per-image F1 plus micro/macro F1 and per-concept P/R.

    ``gt``/``gt_manual``/``pred``: {id: [CUI, ...]}; images without a prediction count as empty ones.
    ``protocol`` picks the year's secondary CUI list (14 CUIs in 2024, 15 in 2025).
    """
    from medcap_utils.metrics.concepts import concept_scores, per_concept_table

    if protocol not in CONCEPT_PROTOCOLS:
        raise ValueError(f"protocol must be one of {CONCEPT_PROTOCOLS}")
    year = int(protocol[-4:])
    res = concept_scores(gt, pred, gt_manual, year=year)
    ci = {}
    for name, per in res["per_image"].items():
        if bootstrap and per:
            ci[name] = bt.bootstrap_ci(list(per.values()), bootstrap, seed)
    ids = list(gt)
    table = pd.DataFrame({"ID": ids, "reference": [";".join(gt[i]) for i in ids],
                          "hypothesis": [";".join(pred.get(i, [])) for i in ids],
                          **{k: [v.get(i, np.nan) for i in ids] for k, v in res["per_image"].items()}})
    result = {"task": "concepts", "scores": res["scores"], "ci": ci, "unavailable": {}, "per_image": table,
              "per_concept": per_concept_table(gt, pred),
              "provenance": provenance(protocol=f"{protocol} concept detection", counts=res["counts"],
                                       bootstrap=bootstrap, seed=seed,
                                       notes={"f1": "per-image binary F1 over union of CUIs, upper-cased; "
                                                    "empty ground truth skipped",
                                              "secondary": f"concepts_manual restricted to the {res['secondary_cuis']} "
                                                           f"allowed CUIs of {year}"})}
    if out_dir is not None:
        write_outputs(result, out_dir, texts=False)
    return result


def _clean(obj):
    """JSON-safe copy: numpy -> python, NaN -> None."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _clean(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        return None if math.isnan(float(obj)) or math.isinf(float(obj)) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def to_json(result: dict, per_image_path=None) -> dict:
    """The JSON form: ``per_image`` becomes a path (if given) or a list of records."""
    out = {k: v for k, v in result.items() if k not in ("per_image", "per_concept")}
    out["per_image"] = str(per_image_path) if per_image_path else result["per_image"].to_dict("records")
    return _clean(out)


def write_outputs(result: dict, out_dir, texts: bool = True) -> Path:
    """Write ``refs.txt``/``hyps.txt`` (captions), ``per_image.csv``, ``per_concept.csv``, ``scores.json``."""
    # Each file is written whole or not at all (temporary name, then rename): a kill or a full disk
    # never leaves a truncated per_image.csv or scores.json that a later step would read as complete.
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = result["per_image"]
    if texts:
        atomic_write_text(out_dir / "refs.txt",
                          "\n".join(" ".join(str(t).splitlines()) for t in table.reference) + "\n")
        atomic_write_text(out_dir / "hyps.txt",
                          "\n".join(" ".join(str(t).splitlines()) for t in table.hypothesis) + "\n")
    atomic_write_text(out_dir / "per_image.csv", table.to_csv(index=False))
    if "per_concept" in result:
        atomic_write_text(out_dir / "per_concept.csv", result["per_concept"].to_csv(index=False))
    atomic_write_text(out_dir / "scores.json", json.dumps(to_json(result, out_dir / "per_image.csv"), indent=2))
    return out_dir


def _parser(prog: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog or "python -m medcap_utils.evaluation.evaluate",
                                description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="task", required=True)
    cap = sub.add_parser("captions", help="score a caption run file")
    cap.add_argument("--gt", required=True, help="ground truth ID,Caption CSV")
    cap.add_argument("--pred", required=True, help="run file <image_id>,<caption>")
    cap.add_argument("--protocol", default="coco", choices=CAPTION_PROTOCOLS)
    cap.add_argument("--images", help="directory with <ID>.jpg (CLIPScore / similarity)")
    cap.add_argument("--metrics", nargs="+", help="subset of metric names (default: the protocol's)")
    cap.add_argument("--clip-model", help="CLIP id or directory (default openai/clip-vit-base-patch32)")
    cap.add_argument("--bertscore-model", help="BERTScore model id or directory (default deberta-xlarge-mnli)")
    cap.add_argument("--bertscore-layers", type=int,
                     help="layer whose embeddings BERTScore uses; needed with a model directory (e.g. 6 for MiniLM-L6)")
    con = sub.add_parser("concepts", help="score a concept run file")
    con.add_argument("--gt", required=True, help="ground truth ID,CUIs CSV")
    con.add_argument("--gt-manual", help="concepts_manual CSV for the secondary F1")
    con.add_argument("--protocol", default="imageclef2025", choices=CONCEPT_PROTOCOLS,
                     help="year whose secondary CUI list applies (2024: 14 CUIs, 2025: 15 with OCT)")
    con.add_argument("--pred", required=True, help="run file <image_id>,<CUI>;<CUI>...")
    for sp in (cap, con):
        sp.add_argument("--out", required=True, help="metrics JSON to write")
        sp.add_argument("--bootstrap", type=int, default=bt.N_BOOT, help="bootstrap resamples (0 = no CI)")
        sp.add_argument("--seed", type=int, default=0)
    return p


def main(argv=None, prog: str | None = None) -> int:
    from medcap_utils.data.rocov2 import MalformedCSVError, read_captions, read_concepts
    from medcap_utils.evaluation.runfiles import RunFileError, read_run_file

    args = _parser(prog).parse_args(argv)
    out = Path(args.out)
    side = out.with_suffix("")  # metrics.json -> metrics/ holds per-image scores and texts
    try:
        if args.task == "captions":
            gt_df = read_captions(args.gt)
            gt = dict(zip(gt_df.ID, gt_df.Caption))
            pred = read_run_file(args.pred, "captions", valid_ids=gt)
            result = evaluate_captions(gt, pred, protocol=args.protocol, metrics=args.metrics, images=args.images,
                                       bootstrap=args.bootstrap, seed=args.seed, out_dir=side,
                                       clip_model=args.clip_model, bertscore_model=args.bertscore_model,
                                       bertscore_layers=args.bertscore_layers)
        else:
            gt_df = read_concepts(args.gt)
            gt = dict(zip(gt_df.ID, gt_df.CUIs))
            manual = None
            if args.gt_manual:
                m_df = read_concepts(args.gt_manual)
                manual = dict(zip(m_df.ID, m_df.CUIs))
            pred = read_run_file(args.pred, "concepts", valid_ids=gt)
            result = evaluate_concepts(gt, pred, gt_manual=manual, bootstrap=args.bootstrap, seed=args.seed,
                                       out_dir=side, protocol=args.protocol)
    except RunFileError as err:
        print(f"invalid run file: {err}", file=sys.stderr)
        return 2
    except MalformedCSVError as err:  # the ground truth is read by the same path as `check` and training
        print(f"invalid ground truth: {err}", file=sys.stderr)
        return 2
    except FileNotFoundError as err:  # a --gt, --pred or --images path (or an image under it) that is not there
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a full disk or an unwritable --out: the outputs are whole or absent
        print(f"error: cannot write the outputs: {err}", file=sys.stderr)
        return 1
    try:
        atomic_write_text(out, json.dumps(to_json(result, side / "per_image.csv"), indent=2))
    except OSError as err:
        print(f"error: cannot write {out}: {err}", file=sys.stderr)
        return 1
    print(json.dumps(_clean(result["scores"]), indent=2))
    for name, reason in result["unavailable"].items():
        print(f"unavailable: {name}: {reason}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
