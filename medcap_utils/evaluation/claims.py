"""Each seed paper's claims with a measured verdict (issue 17 item 5): notebooks 02-07 (their rows), 09 and REPORT.md.

The claims are data (``configs/claims.yaml``, read by :func:`medcap_utils.papers.claims`); this module measures a
verdict for each from the runs under ``reports/runs/`` and the tables under ``reports/tables/``. A verdict is one of
``shown``, ``not shown (<numbers>)`` or ``not testable offline (<why>)``, decided by these rules (in this order):

1. A run the claim needs is absent: ``not testable offline (run X not written[: why the demo lacks it])``.
2. A zero-shot claim (``zero_shot: true``) whose model ``b`` is not a pretrained model used as it is: its run.json
   meta names no ``models/standins/`` folder (a randomly initialised model) or records training time (trained on
   the demo data): ``not testable offline`` saying which.
3. A run in the comparison is *collapsed* (one caption, or one concept set, for half of its images or more:
   :func:`medcap_utils.evaluation.caption_use.is_collapsed`): ``not shown (collapsed: ...)``, never ``shown``.
   Baselines computed here (``@most_frequent_caption``...) are constant on purpose and exempt.
4. Run-vs-run claims compare per-image scores on the same test images (``metric``: ImageCLEF ROUGE-1, pycocoevalcap
   CIDEr or BLEU-4, seed 004's NLTK BLEU, the official per-image concept F1) with a paired bootstrap
   (:func:`medcap_utils.metrics.bootstrap.paired_bootstrap`, 1000 resamples, 95% percentile CI of the mean
   difference a - b):

   * ``>``: shown when the CI's lower end is above 0;
   * ``>=``: shown when the CI's lower end is above ``-margin`` (non-inferiority, :data:`MARGINS`);
   * ``close``: the same with the wider :data:`MARGINS` ``close`` margin ("comes close" is looser than "as good").

   Margins: ROUGE-1 0.005 for ``>=`` (half of seed 000's own BLIP-large vs base gap, 0.0098 ROUGE, so a tie within
   it does not reverse the paper's smaller beam-vs-greedy gaps either) and 0.01 for ``close`` (about 4% of the
   paper's ROUGE level); concept F1 0.01 / 0.02 (one F1 point: ImageCLEF ranks teams to two decimals); CIDEr
   0.02 / 0.04 and BLEU 0.01 / 0.02 (a few percent of the demo's score levels).
5. Training seeds: runs named ``<run>_seedN`` / ``<run>-seedN`` beside ``<run>`` are further training seeds of it.
   Their per-image scores are averaged over seeds before the bootstrap, and ``shown`` also needs every seed to
   agree (the worst seed of ``a`` beats the best of ``b``, by the same rule). With one seed per side the table
   says the verdict is over test images only.
6. ``faster`` compares the training times recorded in each run's meta (``train_time_s``, and a list
   ``train_time_s_repeats`` when the timing was repeated): shown when every time of ``a`` is below every time of
   ``b``; the note says when one timing of each decides it.
7. ``threshold`` and ``attention`` read the notebook's saved table (05's threshold sweep, 07's attention on the
   finding); the rule is in :func:`threshold_verdict` and :func:`attention_verdict`.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from medcap_utils.evaluation.caption_use import caption_counts
from medcap_utils.evaluation.runfiles import RunFileError, read_run_dir, read_run_file
from medcap_utils.metrics.bootstrap import paired_bootstrap

MARGINS = {">=": {"rouge1": 0.005, "f1_primary": 0.01, "CIDEr": 0.02, "Bleu_4": 0.01, "nltk_bleu": 0.01},
           "close": {"rouge1": 0.01, "f1_primary": 0.02, "CIDEr": 0.04, "Bleu_4": 0.02, "nltk_bleu": 0.02}}
COCO_METRICS = ("rouge1", "CIDEr", "Bleu_4", "ROUGE_L", "Bleu_1")
N_BOOT = 1000
SEED_RUN = re.compile(r"^(?P<base>.+?)[_-]seed(?P<seed>\d+)$")
COLUMNS = ["paper", "claim", "notebook", "statement", "paper's numbers", "where", "kind", "metric", "a", "b",
           "ours a", "ours b", "diff a-b", "CI low", "CI high", "margin", "images", "seeds", "verdict", "note"]


class Untestable(Exception):
    """The claim cannot be tested offline; the message says why."""


def seed_runs(runs_root, name: str) -> list[Path]:
    """``name`` and its seed replicates (``name_seedN`` / ``name-seedN``) under ``runs_root`` that have a run.json."""
    root = Path(runs_root)
    found = [root / name] if (root / name / "run.json").exists() else []
    for run_json in sorted(root.glob(f"{name}[-_]seed*/run.json")):
        match = SEED_RUN.match(run_json.parent.name)
        if match and match["base"] == name:
            found.append(run_json.parent)
    return found


def read_predictions(run_dir) -> tuple[dict, dict]:
    """``(run.json, {id: caption or [CUIs]})`` of one run folder."""
    info, run_file = read_run_dir(run_dir)
    return info, read_run_file(run_file, info["task"], valid_ids=None)


def collapse(predictions: dict) -> dict:
    """:func:`caption_counts` of a run's outputs (a concept run's sets compared as sorted text)."""
    values = [v if isinstance(v, str) else ";".join(sorted(v)) for v in predictions.values()]
    return caption_counts(values)


def _ground_truth(info: dict) -> tuple[dict, dict | None]:
    from medcap_utils.data.rocov2 import read_captions, read_concepts, split_files
    from medcap_utils.paths import resolve

    files = split_files(resolve(info["data_dir"]), info["split"])
    if info["task"] == "captions":
        frame = read_captions(files["captions"])
        return dict(zip(frame.ID, frame.Caption)), None
    frame = read_concepts(files["concepts"])
    manual = None
    if files["concepts_manual"].exists():
        m = read_concepts(files["concepts_manual"])
        manual = dict(zip(m.ID, m.CUIs))
    return dict(zip(frame.ID, frame.CUIs)), manual


def score(info: dict, predictions: dict, metric: str) -> pd.Series:
    """Per-image ``metric`` of ``predictions`` against the run's split (indexed by image ID, in the run's order)."""
    gt, manual = _ground_truth(info)
    gt = {i: gt[i] for i in predictions}
    if metric == "nltk_bleu":
        from medcap_utils.data.text_preprocessing import imageclef_bleu

        per = imageclef_bleu(gt, predictions)["per_image"]
        return pd.Series(per, dtype=float)
    if info["task"] == "concepts":
        from medcap_utils.evaluation.evaluate import evaluate_concepts

        table = evaluate_concepts(gt, predictions, gt_manual=manual, bootstrap=0)["per_image"]
    else:
        from medcap_utils.evaluation.evaluate import evaluate_captions

        table = evaluate_captions(gt, predictions, protocol="coco", metrics=[metric], bootstrap=0)["per_image"]
    if metric not in table:
        raise Untestable(f"metric {metric} unavailable for a {info['task']} run")
    return pd.Series(table[metric].to_numpy(dtype=float), index=table.ID)


def cached_score(info: dict, predictions: dict, metric: str, cache_dir=None) -> pd.Series:
    """:func:`score`, cached under ``cache_dir`` by a hash of the predictions, split and metric."""
    if cache_dir is None:
        return score(info, predictions, metric)
    key = json.dumps([metric, info["data_dir"], info["split"], sorted((k, str(v)) for k, v in predictions.items())])
    path = Path(cache_dir) / f"{metric}-{hashlib.sha256(key.encode()).hexdigest()[:20]}.csv"
    if path.exists():
        frame = pd.read_csv(path, dtype={"ID": str})
        return pd.Series(frame["value"].to_numpy(dtype=float), index=frame.ID)
    values = score(info, predictions, metric)
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"ID": values.index, "value": values.to_numpy()}).to_csv(path, index=False)
    return values


def computed_baseline(name: str, info: dict, ids: list) -> dict:
    """A baseline computed from the training split of ``info``'s data: ``{id: caption or [CUIs]}`` for ``ids``."""
    from medcap_utils.data.rocov2 import split_frame
    from medcap_utils.evaluation import baselines
    from medcap_utils.paths import resolve

    train = split_frame(resolve(info["data_dir"]), "train")
    if name == "most_frequent_caption":
        caption = baselines.most_frequent_caption(train["caption"])
    elif name == "consensus_caption":
        caption = baselines.consensus_caption(list(train["caption"]))
    elif name == "top_k_frequency":  # k as notebook 05's default: the median number of CUIs per training image
        k = int(np.median([len(c) for c in train["cuis"]]))
        return {i: baselines.top_k_concepts(train["cuis"], k) for i in ids}
    else:
        raise Untestable(f"unknown computed baseline @{name}")
    return {i: caption for i in ids}


def zero_shot_problem(name: str, info: dict) -> str | None:
    """Why run ``name`` is not a zero-shot pretrained model (None when it is one): see rule 2."""
    meta = info.get("meta", {})
    strings = re.findall(r'"([^"]*)"', json.dumps(meta))
    trained = float(meta.get("train_time_s") or 0.0)
    if trained > 0:
        return (f"the demo's {name} is a small model trained on the demo data ({trained:.1f} s), not a pretrained "
                "model used zero-shot")
    if not any("standins" in s for s in strings):
        return (f"the demo's {name} is randomly initialised (no pretrained stand-in in its run.json), so zero-shot "
                "tests nothing")
    return None


def _side(runs_root, name: str, other_info: dict | None, metric: str, cache_dir, claim: dict) -> dict:
    """Per-image scores of one side (seed runs pooled), its collapse counts and run.json."""
    if name.startswith("@"):
        if other_info is None:
            raise Untestable(f"baseline {name} needs the other side's run")
        info, ids = other_info["info"], list(other_info["scores"][0].index)
        preds = computed_baseline(name[1:], info, ids)
        return {"names": [name], "info": info, "scores": [cached_score(info, preds, metric, cache_dir)],
                "collapsed": [], "times": []}
    dirs = seed_runs(runs_root, name)
    if not dirs:
        why = f": {claim['untestable']}" if claim.get("untestable") else ""
        raise Untestable(f"run {name} not written{why}")
    out = {"names": [d.name for d in dirs], "scores": [], "collapsed": [], "times": []}
    for run_dir in dirs:
        info, preds = read_predictions(run_dir)
        out["info"] = info
        counts = collapse(preds)
        if counts["collapsed"]:
            what = "captions" if info["task"] == "captions" else "concept sets"
            out["collapsed"].append(f"{run_dir.name}, {counts['distinct captions']} distinct {what} "
                                    f"of {counts['images']}")
        meta = info.get("meta", {})
        out["times"] += [float(t) for t in meta.get("train_time_s_repeats") or [meta.get("train_time_s")]
                         if t is not None and np.isfinite(float(t))]
        if metric:
            out["scores"].append(cached_score(info, preds, metric, cache_dir))
    return out


def _fmt(x: float) -> str:
    return f"{x:.4f}"


def run_name(value, profile: str = "demo") -> str | None:
    """A claim's run: one name for every profile, or ``{hand-off table: name}`` (``configs/handoff.yaml``'s tables:
    ``demo``, ``rocov2``) where the profiles name it differently; None when ``profile``'s table names none."""
    if isinstance(value, dict):
        from medcap_utils.handoff import table_name

        return value.get(table_name(profile))
    return value


def compare(claim: dict, runs_root, cache_dir=None, n_boot: int = N_BOOT, seed: int = 0,
            profile: str = "demo") -> dict:
    """One row of the claims table for a run-vs-run claim (``>``, ``>=``, ``close``, ``faster``)."""
    kind, metric = claim["kind"], claim.get("metric")
    name_a, name_b = run_name(claim["a"], profile), run_name(claim["b"], profile)
    row = {"metric": metric or "training time (s)", "a": name_a, "b": name_b}
    if name_a is None or name_b is None:
        return {**row, "verdict": f"not testable offline (the claim names no run for profile {profile})"}
    try:
        a = _side(runs_root, name_a, None, metric, cache_dir, claim)
        b = _side(runs_root, name_b, a, metric, cache_dir, claim)
    except Untestable as why:
        return {**row, "verdict": f"not testable offline ({why})"}
    except (RunFileError, FileNotFoundError, KeyError, ValueError) as err:  # a run or its data unreadable here
        return {**row, "verdict": f"not testable offline (a run or its ground truth cannot be read: {str(err)[:160]})"}
    if claim.get("zero_shot"):
        problem = zero_shot_problem(name_b, b["info"])
        if problem:
            row["verdict"] = f"not testable offline ({problem})"
    row["seeds"] = f"{len(a['names'])} x {len(b['names'])}"
    if kind == "faster":
        return {**row, **_faster(a["times"], b["times"], row.get("verdict"))}
    ids = list(a["scores"][0].index)
    if any(set(s.index) != set(ids) for s in a["scores"] + b["scores"]):
        return {**row, "verdict": "not testable offline (the runs score different images)"}
    pool_a = np.mean([s.loc[ids].to_numpy() for s in a["scores"]], axis=0)
    pool_b = np.mean([s.loc[ids].to_numpy() for s in b["scores"]], axis=0)
    scored = np.isfinite(pool_a) & np.isfinite(pool_b)  # concept F1 skips images without ground truth (NaN)
    ids, pool_a, pool_b = [i for i, k in zip(ids, scored) if k], pool_a[scored], pool_b[scored]
    test = paired_bootstrap(pool_a, pool_b, n_boot, seed)
    margin = 0.0 if kind == ">" else MARGINS[kind].get(metric, 0.0)
    seed_means_a = [float(s.loc[ids].mean()) for s in a["scores"]]
    seed_means_b = [float(s.loc[ids].mean()) for s in b["scores"]]
    row.update({"ours a": float(pool_a.mean()), "ours b": float(pool_b.mean()), "diff a-b": test["diff"],
                "CI low": test["low"], "CI high": test["high"], "margin": margin, "images": len(ids),
                "note": f"over the {len(ids)} {a['info']['split']} images only, one training seed per run"
                if row["seeds"] == "1 x 1" else
                f"per-image scores averaged over training seeds; seed means a {seed_means_a}, b {seed_means_b}"})
    if "verdict" in row:
        return row
    numbers = (f"{metric} {_fmt(pool_a.mean())} vs {_fmt(pool_b.mean())}, diff {test['diff']:+.4f}, "
               f"95% CI [{test['low']:+.4f}, {test['high']:+.4f}]")
    if kind != ">":
        numbers += f", margin {margin}"
    collapsed = a["collapsed"] + b["collapsed"]
    if collapsed:
        return {**row, "verdict": f"not shown (collapsed: {'; '.join(collapsed)}; {numbers})"}
    passes = test["low"] > -margin if kind != ">" else test["low"] > 0
    seeds_agree = min(seed_means_a) - max(seed_means_b) > (-margin if kind != ">" else 0.0)
    if passes and seeds_agree:
        return {**row, "verdict": "shown"}
    if passes:
        numbers += "; the training seeds disagree"
    return {**row, "verdict": f"not shown ({numbers})"}


def _faster(times_a: list, times_b: list, verdict: str | None) -> dict:
    if not times_a or not times_b:
        return {"verdict": verdict or "not testable offline (no training time recorded in run.json)"}
    ta, tb = np.array(times_a), np.array(times_b)
    single = len(ta) == 1 and len(tb) == 1
    spread = "" if single else (f" (a {ta.min():.2f}-{ta.max():.2f} s over {len(ta)}, "
                                f"b {tb.min():.2f}-{tb.max():.2f} s over {len(tb)})")
    note = (f"time ratio a/b {ta.mean() / tb.mean():.2f}{spread}" +
            ("; one timing of each decides it (not repeated)" if single else ""))
    row = {"ours a": float(ta.mean()), "ours b": float(tb.mean()), "diff a-b": float(ta.mean() - tb.mean()),
           "note": note}
    if verdict:
        return {**row, "verdict": verdict}
    if ta.max() < tb.min():
        return {**row, "verdict": "shown"}
    return {**row, "verdict": f"not shown (training time {ta.mean():.2f} s vs {tb.mean():.2f} s{spread})"}


def threshold_verdict(claim: dict, tables_root) -> dict:
    """05's validation sweep: the threshold maximising per-image F1 vs the one maximising micro-F1. Shown when they
    differ and the per-image choice scores the official (per-image) F1 higher; the sweep holds means only, no CI."""
    path = Path(tables_root) / claim["table"]
    if not path.exists():
        return {"verdict": f"not testable offline (table {claim['table']} not written)"}
    sweep = pd.read_csv(path)
    if not {"threshold", "f1_per_image", "f1_micro"} <= set(sweep.columns) or sweep.empty:
        return {"verdict": f"not testable offline (table {claim['table']} lacks the per-image and micro F1 sweep)"}
    by_image = sweep.loc[sweep.f1_per_image.idxmax()]
    by_micro = sweep.loc[sweep.f1_micro.idxmax()]
    row = {"metric": "f1_per_image (validation)", "a": f"threshold {by_image.threshold:g} (per-image F1)",
           "b": f"threshold {by_micro.threshold:g} (micro-F1)", "ours a": float(by_image.f1_per_image),
           "ours b": float(by_micro.f1_per_image), "diff a-b": float(by_image.f1_per_image - by_micro.f1_per_image),
           "images": None, "note": f"validation sweep of {len(sweep)} thresholds; means only, no CI"}
    if by_image.threshold == by_micro.threshold:
        return {**row, "verdict": f"not shown (both pick threshold {by_image.threshold:g})"}
    return {**row, "verdict": "shown"}


def attention_verdict(claim: dict, tables_root) -> dict:
    """07's attention on the finding (the claim's ``model`` row, default ``trained``; the step writing the finding
    word): shown when the hit rate
    (most attended cell inside the truth box) is above its chance level by more than 1.96 standard errors of a
    chance hit rate (binomial, variance at the mean chance level: conservative for varying box sizes)."""
    path = Path(tables_root) / claim["table"]
    if not path.exists():
        return {"verdict": f"not testable offline (table {claim['table']} not written: real ROCOv2 has no finding "
                           "boxes, or notebook 07 did not run)"}
    table = pd.read_csv(path)
    missing = sorted({"model", "steps", "n", "hit_rate", "chance_peak", "attention_mass", "chance_area"}
                     - set(table.columns))
    if missing:
        return {"verdict": f"not testable offline (table {claim['table']} lacks {', '.join(missing)})"}
    model = claim.get("model", "trained")  # the table's model row: notebook 07 measures more than one
    rows = table[(table["model"] == model) & (table["steps"] == "finding word")]
    if rows.empty:
        return {"verdict": f"not testable offline (no {model!r} 'finding word' row in the table"
                           + (f": {claim['untestable']})" if claim.get("untestable") else ")")}
    r = rows.iloc[0]
    n, hit, chance = int(r["n"]), float(r["hit_rate"]), float(r["chance_peak"])
    se = float(np.sqrt(max(chance * (1 - chance), 1e-12) / max(n, 1)))
    low = hit - 1.96 * se
    row = {"metric": "attention hit rate", "a": f"{model} LSTM", "b": "chance", "ours a": hit, "ours b": chance,
           "diff a-b": hit - chance, "CI low": hit - chance - 1.96 * se, "CI high": hit - chance + 1.96 * se,
           "images": n, "note": f"attention mass in the box {float(r['attention_mass']):.3f} vs its area "
                                f"{float(r['chance_area']):.3f}; one training seed"}
    if n and low > chance:
        return {**row, "verdict": "shown"}
    return {**row, "verdict": f"not shown (hit rate {hit:.3f} vs chance {chance:.3f} on {n} images, "
                              f"difference {hit - chance:+.3f} +- {1.96 * se:.3f})"}


def claims_table(reports_root="reports", papers=None, cache: bool = True, n_boot: int = N_BOOT,
                 items=None, profile: str | None = None) -> pd.DataFrame:
    """One row per claim (of ``papers``, default all) with the paper's numbers beside ours and the verdict;
    ``items``: claims to measure instead of ``configs/claims.yaml``'s (the tests' own); ``profile``: whose run
    names to use (default: the one ``<reports>/manifest.json`` records, else demo)."""
    from medcap_utils.papers import claims

    root = Path(reports_root)
    if profile is None:
        manifest = root / "manifest.json"
        profile = (json.loads(manifest.read_text()).get("profile") if manifest.exists() else None) or "demo"
    cache_dir = root / "cache" / "claims" if cache else None
    rows = []
    for claim in claims() if items is None else items:
        if papers is not None and claim["paper"] not in papers:
            continue
        if claim["kind"] == "threshold":
            measured = threshold_verdict(claim, root / "tables")
        elif claim["kind"] == "attention":
            measured = attention_verdict(claim, root / "tables")
        else:
            measured = compare(claim, root / "runs", cache_dir, n_boot, profile=profile)
        if claim.get("caveat"):
            measured["note"] = "; ".join(n for n in (claim["caveat"], measured.get("note")) if n)
        rows.append({"paper": claim["paper"], "claim": claim["id"], "notebook": claim["notebook"],
                     "statement": claim["statement"], "paper's numbers": claim["paper_numbers"],
                     "where": claim["where"], "kind": claim["kind"], "metric": claim.get("metric"),
                     **measured})
    return pd.DataFrame(rows).reindex(columns=COLUMNS)
