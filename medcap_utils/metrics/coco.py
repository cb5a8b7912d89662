"""COCO caption metrics through pycocoevalcap itself: BLEU-1..4, METEOR, ROUGE-L, CIDEr(-D), SPICE.

Numbers are pycocoevalcap's own (tests compare with calling it directly). Two things differ from
``COCOEvalCap`` only in cost, not in value: the PTB tokenizer runs once for references and
hypotheses together (one Java start instead of two), and METEOR's Java process starts while the
tokenizer runs (once per Python process, then reused) and scores in a background thread while
BLEU/ROUGE-L/CIDEr run in Python; the SCORE lines are streamed rather than sent one round trip each.

One deliberate fix: the PTB tokenizer is line based and Java also breaks lines at ``\\r``, ``\\x0b``,
``\\x0c``, ``\\x85``, ``\\u2028``... (pycocoevalcap only removes ``\\n``), which silently shifts every
later caption onto the wrong image. Such characters are replaced by a space and counted.

Used by notebook 08 and, via :func:`coco_scores`, by the training notebooks for per-epoch validation.
"""
from __future__ import annotations

import atexit
import shutil
import threading
from dataclasses import dataclass, field

import numpy as np

from medcap_utils.metrics import MetricUnavailable

LEXICAL = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr")
ALL = LEXICAL + ("SPICE",)


def one_line(text: str) -> tuple[str, bool]:
    """``text`` with every line boundary Python/Java know replaced by a space; and whether it changed."""
    text = str(text)
    joined = " ".join(text.splitlines())
    return joined, joined != text


def ptb_tokenize(gts: dict, res: dict) -> tuple[dict, dict, int]:
    """PTB-tokenize references ``{id: [str]}`` and hypotheses ``{id: str}`` in ONE Java call.

    Returns ``(gts_tok {id: [str]}, res_tok {id: [str]}, n_line_breaks_replaced)``.
    """
    if shutil.which("java") is None:
        raise MetricUnavailable("java not found: the PTB tokenizer of pycocoevalcap needs Java")
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    merged, n_fixed = {}, 0
    for tag, source in (("g", gts), ("r", {k: [v] for k, v in res.items()})):
        for key, texts in source.items():
            entries = []
            for text in texts:
                clean, changed = one_line(text)
                n_fixed += changed
                entries.append({"caption": clean})
            merged[(tag, key)] = entries
    tokenized = PTBTokenizer().tokenize(merged)
    gts_tok = {k: tokenized[("g", k)] for k in gts}
    res_tok = {k: tokenized[("r", k)] for k in res}
    # The tokenizer zips its output lines with the inputs; a count mismatch would misalign silently.
    if any(len(gts_tok[k]) != len(gts[k]) for k in gts) or any(len(v) != 1 for v in res_tok.values()):
        raise RuntimeError("PTB tokenizer returned a different number of lines than it was given")
    return gts_tok, res_tok, n_fixed


@dataclass
class CocoResult:
    """Corpus scores, per-image scores (aligned with ``ids``), BLEU sufficient statistics, notes."""

    ids: list
    scores: dict = field(default_factory=dict)
    per_image: dict = field(default_factory=dict)
    bleu_stats: dict | None = None
    unavailable: dict = field(default_factory=dict)
    n_line_breaks_replaced: int = 0


_METEOR = None


def _start_meteor():
    """The METEOR jar process, started once per Python process and reused by every evaluation (its
    SCORE/EVAL requests are stateless); loading its paraphrase tables is most of METEOR's cost."""
    global _METEOR
    from pycocoevalcap.meteor.meteor import Meteor

    if _METEOR is None or _METEOR.meteor_p.poll() is not None:
        _METEOR = Meteor()
        atexit.register(_close_meteor, _METEOR)
    return _METEOR


def meteor_compute(meteor, gts_tok: dict, res_tok: dict, ids: list) -> tuple[float, list]:
    """pycocoevalcap's ``Meteor.compute_score`` protocol with the SCORE lines pipelined.

    The jar receives exactly the lines ``Meteor._stat`` would send and the same EVAL line, so the
    values are identical; but a writer thread streams them instead of waiting for each reply, which
    removes 2 context switches per pair (minutes on a busy machine for 10k pairs).
    """
    proc = meteor.meteor_p

    def score_line(k):
        hyp = res_tok[k][0].replace("|||", "").replace("  ", " ")
        return " ||| ".join(("SCORE", " ||| ".join(gts_tok[k]), hyp)) + "\n"

    def write_all():
        for k in ids:
            proc.stdin.write(score_line(k).encode())
        proc.stdin.flush()

    with meteor.lock:
        writer = threading.Thread(target=write_all, daemon=True)
        writer.start()
        stats = [proc.stdout.readline().decode().strip() for _ in ids]
        writer.join()
        proc.stdin.write(("EVAL ||| " + " ||| ".join(stats) + "\n").encode())
        proc.stdin.flush()
        per = [float(proc.stdout.readline().strip()) for _ in ids]
        return float(proc.stdout.readline().strip()), per


def _close_meteor(meteor) -> None:
    try:
        meteor.meteor_p.stdin.close()
        meteor.meteor_p.wait(timeout=10)
    except Exception:  # the process may already be gone; nothing to report
        meteor.meteor_p.kill()


def _bleu(gts_tok: dict, res_tok: dict, ids: list):
    from pycocoevalcap.bleu.bleu_scorer import BleuScorer

    scorer = BleuScorer(n=4)
    for k in ids:  # same order and option as pycocoevalcap.bleu.Bleu.compute_score
        scorer += (res_tok[k][0], gts_tok[k])
    score, per = scorer.compute_score(option="closest", verbose=0)
    stats = {
        "testlen": np.array([c["testlen"] for c in scorer.ctest], dtype=np.float64),
        "reflen": np.array(
            [min((abs(ref - c["testlen"]), ref) for ref in c["reflen"])[1] for c in scorer.ctest], dtype=np.float64
        ),
        "guess": np.array([c["guess"] for c in scorer.ctest], dtype=np.float64),
        "correct": np.array([c["correct"] for c in scorer.ctest], dtype=np.float64),
    }
    return score, per, stats


def corpus_bleu_from_stats(stats: dict, weights: np.ndarray | None = None) -> np.ndarray:
    """Corpus BLEU-1..4 from per-image statistics, pycocoevalcap's formula ("closest" ref length).

    ``weights`` (B, N) counts how often each image is drawn (bootstrap); returns (B, 4) or (4,).
    Used by :mod:`medcap_utils.metrics.bootstrap` so BLEU's CI resamples the corpus score itself.
    """
    single = weights is None
    w = np.ones((1, len(stats["testlen"]))) if single else np.atleast_2d(weights)
    small, tiny = 1e-9, 1e-15
    testlen, reflen = w @ stats["testlen"], w @ stats["reflen"]
    correct, guess = w @ stats["correct"], w @ stats["guess"]
    ratios = (correct + tiny) / (guess + small)
    out = np.cumprod(ratios, axis=1) ** (1.0 / np.arange(1, 5))
    ratio = (testlen + tiny) / (reflen + small)
    penalty = np.where(ratio < 1, np.exp(1 - 1 / ratio), 1.0)
    out = out * penalty[:, None]
    return out[0] if single else out


def coco_evaluate(gts: dict, res: dict, metrics=None) -> CocoResult:
    """pycocoevalcap scores for references ``{id: [str, ...]}`` and hypotheses ``{id: str}``.

    ``metrics``: subset of :data:`ALL` (default :data:`LEXICAL`; SPICE only when asked, and reported
    unavailable when its CoreNLP download fails). Raw text goes in; tokenization happens here.
    """
    wanted = list(LEXICAL if metrics is None else [m for m in ALL if m in set(metrics)])
    if set(gts) != set(res):
        raise ValueError(f"gts and res must have the same ids ({len(set(gts) ^ set(res))} differ)")
    ids = list(gts)
    gts = {k: [gts[k]] if isinstance(gts[k], str) else list(gts[k]) for k in ids}
    result = CocoResult(ids=ids)

    meteor = _start_meteor() if "METEOR" in wanted and shutil.which("java") else None
    gts_tok, res_tok, result.n_line_breaks_replaced = ptb_tokenize(gts, {k: res[k] for k in ids})

    meteor_out: dict = {}
    if meteor is not None:
        def run_meteor():
            try:
                meteor_out["value"] = meteor_compute(meteor, gts_tok, res_tok, ids)
            except Exception as err:  # reported, never replaced by a number
                meteor_out["error"] = f"METEOR failed: {err!r}"
                global _METEOR
                _close_meteor(meteor)  # its pipes may hold half an answer: never reuse it
                _METEOR = None

        thread = threading.Thread(target=run_meteor, daemon=True)
        thread.start()
    elif "METEOR" in wanted:
        result.unavailable["METEOR"] = "java not found"

    if any(m.startswith("Bleu") for m in wanted):
        score, per, result.bleu_stats = _bleu(gts_tok, res_tok, ids)
        for n in range(4):
            if f"Bleu_{n + 1}" in wanted:
                result.scores[f"Bleu_{n + 1}"] = score[n]
                result.per_image[f"Bleu_{n + 1}"] = np.asarray(per[n], dtype=float)
    if "ROUGE_L" in wanted:
        from pycocoevalcap.rouge.rouge import Rouge

        score, per = Rouge().compute_score(gts_tok, res_tok)
        result.scores["ROUGE_L"], result.per_image["ROUGE_L"] = score, np.asarray(per, dtype=float)
    if "CIDEr" in wanted:
        from pycocoevalcap.cider.cider import Cider

        score, per = Cider().compute_score(gts_tok, res_tok)
        result.scores["CIDEr"], result.per_image["CIDEr"] = score, np.asarray(per, dtype=float)

    if meteor is not None:
        thread.join()
        if "value" in meteor_out:
            score, per = meteor_out["value"]
            result.scores["METEOR"], result.per_image["METEOR"] = score, np.asarray(per, dtype=float)
        else:
            result.unavailable["METEOR"] = meteor_out.get("error", "METEOR failed")

    if "SPICE" in wanted:
        try:
            from pycocoevalcap.spice.spice import Spice

            score, per = Spice().compute_score(gts_tok, res_tok)
            result.scores["SPICE"] = float(score)
            result.per_image["SPICE"] = np.array([p["All"]["f"] for p in per], dtype=float)
        except BaseException as err:  # SPICE downloads Stanford CoreNLP at first use; offline it fails
            if isinstance(err, KeyboardInterrupt):
                raise
            result.unavailable["SPICE"] = f"SPICE failed (it downloads Stanford CoreNLP on first use): {err!r}"[:300]
    result.scores = {m: float(result.scores[m]) for m in wanted if m in result.scores}
    return result


def coco_scores(gts: dict, res: dict, metrics=None) -> dict:
    """Just the corpus scores ``{Bleu_1..Bleu_4, METEOR, ROUGE_L, CIDEr}`` (per-epoch validation).

    ``gts`` values may be a single string or a list of references. Used by notebooks 02-07.
    """
    return coco_evaluate(gts, res, metrics).scores
