"""pycocoevalcap suite: exact equality with calling pycocoevalcap directly on the real ROCOv2 rows."""
from __future__ import annotations

import random

import numpy as np
import pytest

from medcap_utils.data.rocov2 import read_captions
from medcap_utils.metrics.coco import coco_evaluate, corpus_bleu_from_stats, one_line


def sample_pairs(sample_dir):
    """Real references and deterministic hypotheses built from them (halves, shuffles, neighbours)."""
    df = read_captions(sample_dir / "test_captions.csv")
    gt = dict(zip(df.ID, df.Caption))
    ids, rng = list(gt), random.Random(0)
    res = {}
    for i, k in enumerate(ids):
        words = gt[k].split()
        if i % 3 == 0:
            res[k] = " ".join(words[: max(1, len(words) // 2)])
        elif i % 3 == 1:
            rng.shuffle(words)
            res[k] = " ".join(words)
        else:
            res[k] = gt[ids[(i + 1) % len(ids)]]
    return gt, res


def direct_pycocoevalcap(gt, res):
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tok = PTBTokenizer()
    g = tok.tokenize({k: [{"caption": v}] for k, v in gt.items()})
    h = tok.tokenize({k: [{"caption": v}] for k, v in res.items()})
    out = {}
    bleu, _ = Bleu(4).compute_score(g, h, verbose=0)
    out.update({f"Bleu_{i + 1}": bleu[i] for i in range(4)})
    out["METEOR"], out["meteor_per"] = Meteor().compute_score(g, h)
    out["ROUGE_L"], _ = Rouge().compute_score(g, h)
    out["CIDEr"], out["cider_per"] = Cider().compute_score(g, h)
    return out


@pytest.mark.slow  # two METEOR JVM starts: ~15 s idle, ~50 s on a busy 2-core machine
def test_exactly_pycocoevalcap_on_real_rows(sample_dir):
    gt, res = sample_pairs(sample_dir)
    mine = coco_evaluate(gt, res)
    ref = direct_pycocoevalcap(gt, res)
    for name in ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr"):
        assert mine.scores[name] == float(ref[name]), name  # bit-identical, not approximately
    assert np.array_equal(mine.per_image["METEOR"], np.asarray(ref["meteor_per"]))
    assert np.array_equal(mine.per_image["CIDEr"], np.asarray(ref["cider_per"]))
    # the scores are non-trivial: neither perfect nor zero
    assert 0.05 < mine.scores["Bleu_4"] < 0.9 and 0.1 < mine.scores["METEOR"] < 0.9
    # the bootstrap's BLEU aggregation reproduces the corpus score from per-image statistics
    np.testing.assert_allclose(corpus_bleu_from_stats(mine.bleu_stats),
                               [mine.scores[f"Bleu_{i}"] for i in range(1, 5)], rtol=1e-12)


def test_line_separators_do_not_shift_captions():
    # Java's PTB tokenizer breaks lines at U+2028 / \r; unfixed, image "b" would get "a"'s second half.
    gt = {"a": "left\u2028lung mass", "b": "right kidney cyst", "c": "liver\rlesion"}
    res = dict(gt)
    out = coco_evaluate(gt, res, ["ROUGE_L", "Bleu_1"])
    assert np.allclose(out.per_image["ROUGE_L"], 1.0)
    assert out.n_line_breaks_replaced == 4  # two references and two hypotheses changed
    assert one_line("a\u2029b") == ("a b", True) and one_line("ab") == ("ab", False)


def test_identical_and_disjoint_extremes():
    gt = {"1": "axial ct of the chest shows a mass", "2": "mri of the brain with contrast"}
    same = coco_evaluate(gt, dict(gt), ["Bleu_1", "ROUGE_L", "CIDEr"])
    assert same.scores["Bleu_1"] == pytest.approx(1.0) and same.scores["ROUGE_L"] == pytest.approx(1.0)
    assert "METEOR" not in same.scores  # only what was asked for is computed
    other = coco_evaluate(gt, {"1": "zebra", "2": "giraffe"}, ["Bleu_1", "ROUGE_L"])
    assert other.scores["ROUGE_L"] == 0.0 and other.scores["Bleu_1"] < 1e-6


def test_mismatched_ids_rejected():
    with pytest.raises(ValueError):
        coco_evaluate({"a": "x"}, {"b": "x"})
