"""The ImageCLEFmedical caption-prediction protocols (2023/2024 and 2025) as the organisers run them.

Preprocessing (BERTScore, ROUGE-1, BLEURT): ``lower()``, every ``\\d+`` -> ``number``, then delete
``string.punctuation``. Every metric is computed per image and averaged.

"Both empty" (the pair scores 1 without a model) is decided per year, see ``BOTH_EMPTY_ON``:

- 2025: on the raw texts (``len(text) == 0``). A pair that is empty only after preprocessing
  ("(*)." against "") is scored by the metric: BERTScore 0 (bert_score's value for an empty
  sentence), ROUGE-1 0. BLEURT has no empty rule (the model scores every pair); the similarity,
  AlignScore and MedCAT components apply the raw rule (see their modules).
- 2023/2024: the earlier evaluator tests emptiness after preprocessing, sets the score to 1, then
  reads that integer like a result dict (``1["f1"]``) and stops with a ``TypeError``, so the
  official code never produced a number for such a pair. medcap gives the 1 the code means to
  give; the provenance notes say so.

- ``imageclef2024``: primary BERTScore F1 (deberta-xlarge-mnli, no idf), secondary ROUGE-1; also
  BLEU-1, BLEURT, METEOR, CIDEr, CLIPScore, RefCLIPScore (the leaderboard list of seed 000). The
  organisers' code for BLEU-1/METEOR/CIDEr is not public: here they are pycocoevalcap's on
  preprocessed text, labelled so in the notes.
- ``imageclef2025``: relevance = mean(BERTScore F1 with idf over the preprocessed ground truth,
  ROUGE-1, MedImageInsight similarity); factuality = mean(UMLS concept F1, AlignScore);
  overall = mean(relevance, factuality); BLEURT reported. ``relevance_with_bleurt`` (4 components)
  is also given: seed 002's published numbers (50.76 = mean of 87.98, 59.51, 25.35, 30.20) match it.

A combined score missing a component is never presented as complete: ``scores[name]`` is set only
when all components exist, otherwise ``scores[name + "_partial"]`` plus ``combined[name]["missing"]``.
Used by notebook 08 and ``medcap_utils.evaluation.evaluate``.
"""
from __future__ import annotations

import re
import string

import numpy as np

from medcap_utils.metrics import MetricUnavailable
from medcap_utils.metrics import bertscore as bs
from medcap_utils.metrics.rouge1 import rouge1_f

PROTOCOLS = ("imageclef2024", "imageclef2025")
_NUMBER = re.compile(r"\d+")
_NO_PUNCT = str.maketrans("", "", string.punctuation)

METRICS = {
    "imageclef2024": ["bertscore_f1", "rouge1", "bleu1", "bleurt", "meteor", "cider", "clipscore",
                      "refclipscore", "bertscore_minilm_f1"],
    "imageclef2025": ["bertscore_f1", "rouge1", "similarity", "bleurt", "umls_f1", "alignscore",
                      "bertscore_minilm_f1"],
}
COMBINED = {
    "imageclef2024": {},
    "imageclef2025": {
        "relevance": ["bertscore_f1", "rouge1", "similarity"],
        "relevance_with_bleurt": ["bertscore_f1", "rouge1", "similarity", "bleurt"],
        "factuality": ["umls_f1", "alignscore"],
    },
}
PRIMARY = {"imageclef2024": ("bertscore_f1", "rouge1"), "imageclef2025": ("relevance", "factuality")}
YEAR = {"imageclef2024": 2024, "imageclef2025": 2025}
# Which texts decide that a pair is "both empty" (score 1, no model call).
BOTH_EMPTY_ON = {"imageclef2024": "preprocessed", "imageclef2025": "raw"}
BOTH_EMPTY_NOTE = {
    "imageclef2024": "both empty after preprocessing -> 1 (the 2023/2024 evaluator decides here, then "
                     "crashes on its own 1 with a TypeError; medcap gives the 1 it intends)",
    "imageclef2025": "both raw texts empty -> 1 (as the 2025 evaluator); a pair empty only after "
                     "preprocessing is scored by the metric (BERTScore 0, ROUGE-1 0); BLEURT has no empty rule",
}


def preprocess(text: str) -> str:
    """The organisers' caption preprocessing: lower-case, digits runs -> ``number``, no punctuation."""
    return _NUMBER.sub("number", str(text).lower()).translate(_NO_PUNCT)


def both_empty_pairs(gt: list[str], cand: list[str], on: str) -> np.ndarray:
    """Boolean mask of the pairs whose two texts are empty, judged on the ``"raw"`` or the
    ``"preprocessed"`` texts (``BOTH_EMPTY_ON[protocol]`` says which a protocol uses)."""
    if on not in ("raw", "preprocessed"):
        raise ValueError("on must be 'raw' or 'preprocessed'")
    view = (lambda t: str(t)) if on == "raw" else preprocess
    return np.array([len(view(g)) == 0 and len(view(c)) == 0 for g, c in zip(gt, cand)], dtype=bool)


def _with_both_empty(values_for, both_empty: np.ndarray) -> np.ndarray:
    """Compute ``values_for(index array)`` on the pairs that are not both empty; both-empty pairs get 1."""
    out = np.ones(len(both_empty), dtype=float)
    idx = np.flatnonzero(~both_empty)
    if len(idx):
        out[idx] = values_for(idx)
    return out


def evaluate_imageclef(gt: list[str], cand: list[str], protocol: str, metrics=None, image_paths=None,
                       bertscore_model: str = bs.OFFICIAL_MODEL, bertscore_num_layers: int | None = None,
                       clip_model: str | None = None,
                       device: str | None = None, batch_size: int = 32, verbose: bool = False) -> dict:
    """Per-image and averaged scores of one protocol for aligned lists ``gt`` / ``cand`` (raw text).

    ``image_paths`` (aligned, optional) enables CLIPScore / similarity. ``bertscore_model`` may be a
    local directory (then give ``bertscore_num_layers``); anything but the official id is labelled. Returns ``scores``,
    ``per_image`` {metric: array}, ``unavailable`` {metric: reason}, ``combined``, ``counts``, ``notes``.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}")
    if len(gt) != len(cand):
        raise ValueError("gt and cand differ in length")
    wanted = METRICS[protocol] if metrics is None else [m for m in METRICS[protocol] if m in set(metrics)]
    gt_pp, cand_pp = [preprocess(t) for t in gt], [preprocess(t) for t in cand]
    raw_both_empty = both_empty_pairs(gt, cand, "raw")
    both_empty = both_empty_pairs(gt, cand, BOTH_EMPTY_ON[protocol])
    per, unavailable = {}, {}
    notes = {"preprocessing": "lower; \\d+ -> number; strip string.punctuation",
             "both_empty": BOTH_EMPTY_NOTE[protocol]}
    counts = {"pairs": len(gt), "empty_candidates": sum(not c for c in cand_pp),
              "empty_references": sum(not g for g in gt_pp), "both_empty": int(both_empty.sum()),
              "both_empty_raw": int(raw_both_empty.sum())}
    idf = protocol == "imageclef2025"

    def attempt(name, fn):
        try:
            fn()
        except MetricUnavailable as err:
            unavailable[name] = str(err)

    def pick(seq, idx):
        return [seq[i] for i in idx]

    if "rouge1" in wanted:
        per["rouge1"] = _with_both_empty(lambda i: rouge1_f(pick(gt_pp, i), pick(cand_pp, i)), both_empty)

    def run_bertscore(name, model_kwargs):
        def fn():
            result = {}

            def values(i):
                result.update(bs.bertscore(pick(cand_pp, i), pick(gt_pp, i), idf=idf,
                                           idf_sents=gt_pp if idf else None, batch_size=batch_size,
                                           device=device, verbose=verbose, **model_kwargs))
                return result["f1"]

            per[name] = _with_both_empty(values, both_empty)
            if name == "bertscore_f1" and "precision" in result:  # 2025 paper reports recall too
                for part in ("precision", "recall"):
                    per[f"bertscore_{part}"] = _with_both_empty(lambda i, p=part: result[p], both_empty)
            notes[name] = {k: result.get(k) for k in ("model_type", "num_layers", "idf", "revision")}
            notes[name]["idf_sents"] = "preprocessed ground truth" if idf else None
        attempt(name, fn)

    if "bertscore_f1" in wanted:
        run_bertscore("bertscore_f1", {"model_type": bertscore_model, "num_layers": bertscore_num_layers})
        if bertscore_model != bs.OFFICIAL_MODEL and "bertscore_f1" in notes:
            notes["bertscore_f1"]["note"] = ("not the official deberta-xlarge-mnli: "
                                             "not comparable to leaderboard numbers")
    if "bertscore_minilm_f1" in wanted:
        def minilm_kwargs():
            return {"model_type": bs.minilm_path(), "num_layers": 6}
        try:
            run_bertscore("bertscore_minilm_f1", minilm_kwargs())
            notes.setdefault("bertscore_minilm_f1", {})["note"] = bs.OFFLINE_NOTE
        except MetricUnavailable as err:
            unavailable["bertscore_minilm_f1"] = str(err)

    if "bleurt" in wanted:
        from medcap_utils.metrics.bleurt import bleurt_scores

        # No empty rule: the organisers' BLEURT scores every pair, an empty one included (2024's
        # BLEURT code is not public; medcap applies 2025's).
        attempt("bleurt", lambda: per.__setitem__("bleurt", bleurt_scores(
            cand_pp, gt_pp, batch_size=batch_size, device=device)["bleurt"]))
        notes["bleurt"] = {"model_id": "lucadiliello/BLEURT-20-D12", "max_length": 512, "empty_rule": "none"}

    coco_wanted = [m for m in ("bleu1", "meteor", "cider") if m in wanted]
    if coco_wanted:
        from medcap_utils.metrics.coco import coco_evaluate

        names = {"bleu1": "Bleu_1", "meteor": "METEOR", "cider": "CIDEr"}
        res = coco_evaluate({i: [g] for i, g in enumerate(gt_pp)}, dict(enumerate(cand_pp)),
                            [names[m] for m in coco_wanted])
        for m in coco_wanted:
            if names[m] in res.per_image:
                per[m] = res.per_image[names[m]]
            else:
                unavailable[m] = res.unavailable.get(names[m], "not computed")
        notes["bleu1_meteor_cider"] = "pycocoevalcap (PTB tokenizer) on ImageCLEF-preprocessed text, per-image mean"

    if "clipscore" in wanted or "refclipscore" in wanted:
        from medcap_utils.metrics import clipscore

        def clip_fn():
            if image_paths is None:
                raise MetricUnavailable("no images given (--images DIR)")
            out = clipscore.clip_scores(image_paths, list(cand), [[g] for g in gt],
                                        model_id=clip_model or clipscore.DEFAULT_CLIP, device=device,
                                        batch_size=batch_size)
            per["clipscore"], per["refclipscore"] = out["clip_s"], out["refclip_s"]
            counts["clip_truncated_texts"] = out["n_truncated"]
            notes["clipscore"] = {"model_id": out["model_id"], "revision": out["revision"], "w": clipscore.W,
                                  "prefix": clipscore.PREFIX, "text": "raw caption"}
        attempt("clipscore", clip_fn)
        if "clipscore" in unavailable:
            unavailable["refclipscore"] = unavailable["clipscore"]

    if "similarity" in wanted:
        from medcap_utils.metrics.similarity import medimageinsight_similarity

        def sim_fn():
            if image_paths is None:
                raise MetricUnavailable("no images given (--images DIR)")
            per["similarity"] = medimageinsight_similarity(image_paths, list(cand), list(gt), year=YEAR[protocol])
        attempt("similarity", sim_fn)

    from medcap_utils.metrics import factuality

    if "alignscore" in wanted:
        attempt("alignscore", lambda: per.__setitem__("alignscore",
                                                      factuality.alignscore(list(gt), list(cand), device=device)))
    if "umls_f1" in wanted:
        attempt("umls_f1", lambda: per.__setitem__("umls_f1", factuality.umls_concept_f1(list(gt), list(cand))))

    scores = {m: float(np.mean(v)) if len(v) else float("nan") for m, v in per.items()}
    combined = combine(protocol, per, scores)
    return {"scores": scores, "per_image": per, "unavailable": unavailable, "combined": combined,
            "counts": counts, "notes": notes}


def combine(protocol: str, per: dict, scores: dict) -> dict:
    """Add relevance/factuality/overall (2025) to ``per``/``scores``; partial ones get a suffix."""
    combined = {}
    for name, parts in COMBINED[protocol].items():
        have = [p for p in parts if p in per]
        missing = [p for p in parts if p not in per]
        info = {"components": parts, "missing": missing, "partial": bool(missing), "value": None}
        if have:
            values = np.mean([per[p] for p in have], axis=0)
            key = name if not missing else f"{name}_partial"
            per[key], scores[key] = values, float(values.mean())
            info["value"] = scores[key]
        combined[name] = info
    if protocol == "imageclef2025":
        rel, fac = combined["relevance"], combined["factuality"]
        parts = [k for k in ("relevance", "factuality") if k in per]
        partial_parts = [f"{k}_partial" for k in ("relevance", "factuality") if f"{k}_partial" in per]
        missing = sorted(set(rel["missing"]) | set(fac["missing"]))
        info = {"components": ["relevance", "factuality"], "missing": missing, "partial": bool(missing), "value": None}
        usable = parts + partial_parts
        if usable:
            values = np.mean([per[k] for k in usable], axis=0)
            key = "overall" if not missing else "overall_partial"
            per[key], scores[key] = values, float(values.mean())
            info["value"] = scores[key]
        combined["overall"] = info
    return combined
