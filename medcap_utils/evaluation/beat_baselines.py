"""Does each notebook's model beat the retrieval baselines by a clear margin? (notebook 08, issue 17)

A constant caption learns the corpus' phrasing and nothing else, so beating the most frequent caption says
little; the consensus caption (the most typical training caption) and the caption of the nearest training
image, by pixels or by a pretrained encoder's features, are the floors a model that uses the image must clear.
*Clear margin*: the paired bootstrap 95% interval of the per-image difference (same images,
:func:`medcap_utils.metrics.bootstrap.paired_bootstrap`) lies above 0, on CIDEr and on BLEU-4 (pycocoevalcap's
per-image scores; the corpus values are shown beside).

Each notebook's model is its best run by :data:`medcap_utils.evaluation.run_summary.RANK_BY` among runs that are not
collapsed and score the baselines' images; a notebook without one gets a sentence saying why.
"""
from __future__ import annotations

import pandas as pd

from medcap_utils.evaluation.run_summary import CAPTION_HEADLINE, RANK_BY, wide
from medcap_utils.metrics.bootstrap import paired_bootstrap
from medcap_utils.papers import run_group

RETRIEVAL_BASELINES = {"baseline-nn-pixels": "the nearest training image's caption (pixels)",
                       "baseline-nn-encoder": "the nearest training image's caption (pretrained encoder features)",
                       "baseline-consensus-caption": "the consensus caption"}
METRICS = {"CIDEr": "CIDEr", "Bleu_4": "BLEU-4"}
COLUMNS = ["notebook", "run", "baseline", "metric", "run score", "baseline score", "diff", "low", "high",
           "clear margin"]


def _coco(per_image: dict, run: str):
    return per_image.get(run, {}).get("coco")


def compare(table: pd.DataFrame, per_image: dict, distinct: pd.DataFrame, n_boot: int = 1000,
            seed: int = 0) -> pd.DataFrame:
    """One row per notebook x retrieval baseline x metric; ``attrs['sentences']``: one per notebook."""
    values = wide(table, CAPTION_HEADLINE)
    collapsed = set(distinct.loc[distinct["collapsed"], "run"]) if len(distinct) else set()
    bases = {b: _coco(per_image, b) for b in RETRIEVAL_BASELINES if _coco(per_image, b) is not None}
    rows, sentences = [], []
    if not bases:
        out = pd.DataFrame(columns=COLUMNS)
        out.attrs["sentences"] = ["no retrieval baseline was scored (notebook 08's make_baselines is off)"]
        return out
    ids = list(next(iter(bases.values())).ID)
    groups = sorted({run_group(r) for r in values.index if not r.startswith("baseline-")}, key=lambda g: g.order)
    for group in groups:
        runs = [r for r in values.index if run_group(r) == group]
        usable = [r for r in runs if r not in collapsed and _coco(per_image, r) is not None
                  and list(_coco(per_image, r).ID) == ids]
        if not usable:
            why = (f"all {len(runs)} of its runs are collapsed" if all(r in collapsed for r in runs) else
                   "none of its runs that are not collapsed scores the baselines' images (another split or a subset)")
            sentences.append(f"{group.label}: not compared with the retrieval baselines: {why}.")
            continue
        rank_by = RANK_BY if RANK_BY in values.columns else "CIDEr"  # ImageCLEF protocol not run: CIDEr decides
        run = values.loc[usable].sort_values(rank_by, ascending=False, na_position="last").index[0]
        parts, wins = [], 0
        for base, base_scores in bases.items():
            for metric, title in METRICS.items():
                test = paired_bootstrap(_coco(per_image, run)[metric].to_numpy(), base_scores[metric].to_numpy(),
                                        n_boot, seed)
                clear = test["low"] > 0
                wins += clear
                ours, theirs = values.loc[run, title], values.loc[base, title] if base in values.index else float("nan")
                rows.append({"notebook": group.label, "run": run, "baseline": base, "metric": title, "run score": ours,
                             "baseline score": theirs, "diff": test["diff"], "low": test["low"], "high": test["high"],
                             "clear margin": bool(clear)})
                parts.append(f"{title} {ours:.3f} vs {theirs:.3f} for {RETRIEVAL_BASELINES[base]} (per-image "
                             f"difference {test['diff']:+.3f}, 95% CI {test['low']:+.3f} to {test['high']:+.3f})")
        total = len(bases) * len(METRICS)
        every = "both" if len(bases) == 2 else f"all {len(bases)}"
        verdict = (f"beats {every} retrieval baselines by a clear margin on CIDEr and BLEU-4" if wins == total else
                   f"does not beat the retrieval baselines by a clear margin ({wins} of {total} comparisons clear)")
        sentences.append(f"{group.label}: {run} {verdict}: " + "; ".join(parts) + ".")
    out = pd.DataFrame(rows, columns=COLUMNS)
    out.attrs["sentences"] = sentences
    return out
