"""Model-based metric code paths with tiny random models saved and loaded back by path, and the
real offline MiniLM BERTScore. Values of random models are only checked against invariants."""
from __future__ import annotations

import json

import numpy as np
import pytest

from medcap_utils.metrics import MetricUnavailable
from medcap_utils.metrics import bertscore as bs


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A 2-layer BERT with MiniLM's uncased vocabulary, saved with save_pretrained."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    path = tmp_path_factory.mktemp("tiny_bert")
    tok = AutoTokenizer.from_pretrained(bs.minilm_path(), model_max_length=128)
    assert tok("chest")["input_ids"][0] == 101  # the real uncased BERT vocabulary, not a stub
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    BertModel(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A tiny CLIP (77 text positions) with a character-level byte BPE tokenizer."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    path = tmp_path_factory.mktemp("tiny_clip")
    chars = sorted(ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"])}
    (path / "vocab.json").write_text(json.dumps(vocab))
    (path / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(path / "vocab.json"), str(path / "merges.txt"))
    eos = vocab["<|endoftext|>"]
    cfg = CLIPConfig(text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=2, max_position_embeddings=77,
                                      bos_token_id=vocab["<|startoftext|>"], eos_token_id=eos, pad_token_id=eos),
                     vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=2,
                                        image_size=32, patch_size=8), projection_dim=16)
    import torch

    torch.manual_seed(0)
    model = CLIPModel(cfg)
    processor = CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 32},
                                                                 crop_size={"height": 32, "width": 32}), tokenizer=tok)
    # This random model gives negative image-text cosines; "flipped" negates the image projection so
    # the same pairs have positive ones: both branches of max(cos, 0) get exercised.
    out = {}
    for name, sign in (("plain", 1.0), ("flipped", -1.0)):
        with torch.no_grad():
            model.visual_projection.weight.mul_(sign)
        model.save_pretrained(path / name)
        processor.save_pretrained(path / name)
        out[name] = str(path / name)
    return out


def test_bertscore_tiny_identity_and_range(tiny_bert):
    cands = ["ct of the chest shows a mass", "mri of the brain", "left hip x-ray"]
    refs = ["ct of the chest shows a mass", "axial mri brain image", "ultrasound of the liver"]
    out = bs.bertscore(cands, refs, model_type=tiny_bert, num_layers=2, device="cpu")
    assert out["f1"][0] == pytest.approx(1.0, abs=1e-5)
    assert np.all((out["f1"] > -1) & (out["f1"] <= 1 + 1e-6))
    with_idf = bs.bertscore(cands, refs, model_type=tiny_bert, num_layers=2, idf=True, idf_sents=refs, device="cpu")
    assert with_idf["f1"][0] == pytest.approx(1.0, abs=1e-5) and with_idf["idf"]
    assert not np.allclose(with_idf["f1"][1:], out["f1"][1:])  # idf weighting changes non-identical pairs
    assert not out["comparable_to_official"]


def test_official_bertscore_unavailable_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MetricUnavailable, match="deberta-xlarge-mnli"):
        bs.bertscore(["a"], ["a"], device="cpu")


def test_imageclef2025_with_tiny_bertscore(tiny_bert):
    from medcap_utils.metrics.imageclef import evaluate_imageclef, preprocess

    gt = ["CT chest: 3 nodules.", "MRI (T2) of the knee", "--"]
    cand = ["ct chest number nodules", "Ultrasound of the liver", "?"]
    res = evaluate_imageclef(gt, cand, "imageclef2025", ["bertscore_f1", "rouge1"], bertscore_model=tiny_bert,
                             bertscore_num_layers=2, device="cpu")
    f1 = res["per_image"]["bertscore_f1"]
    assert preprocess(gt[0]) == preprocess(cand[0]) and f1[0] == pytest.approx(1.0, abs=1e-5)
    # "--" / "?" are empty only after preprocessing; 2025 judges "both empty" on the raw texts, so
    # the pair is scored: bert_score gives an empty sentence 0
    assert f1[2] == 0.0 and res["counts"]["both_empty"] == 0
    assert res["notes"]["bertscore_f1"]["idf_sents"] == "preprocessed ground truth"
    assert "not comparable" in res["notes"]["bertscore_f1"]["note"]
    assert res["combined"]["relevance"]["missing"] == ["similarity"] and "relevance" not in res["scores"]
    assert res["scores"]["relevance_partial"] == pytest.approx(np.mean((f1 + res["per_image"]["rouge1"]) / 2))


@pytest.mark.slow
def test_minilm_offline_bertscore_is_real():
    cands = ["chest radiograph showing a right lower lobe pneumonia",
             "chest x-ray shows pneumonia in the right lower lobe",
             "the cat sat quietly on a warm windowsill"]
    refs = ["chest radiograph showing a right lower lobe pneumonia"] * 3
    out = bs.offline_bertscore(cands, refs, device="cpu")
    assert out["f1"][0] == pytest.approx(1.0, abs=1e-5)
    assert out["f1"][1] > out["f1"][2] + 0.1  # paraphrase above unrelated
    assert "not comparable" in out["note"]


def test_clipscore_tiny_invariants(tiny_clip):
    import torch
    from PIL import Image

    from medcap_utils.metrics.clipscore import PREFIX, W, clip_scores, load_clip

    rng = np.random.RandomState(0)
    images = [Image.fromarray(rng.randint(0, 255, (40, 48, 3), dtype=np.uint8)) for _ in range(6)]
    cands = ["ct chest", "x" * 90, "mri", "angiogram of the leg", "pet", "ultrasound"]
    refs = [["ct of chest"], ["b"], ["mri brain", "mri"], ["leg angiography"], ["pet ct"], ["us", "sonogram"]]
    out = clip_scores(images, cands, refs, model_id=tiny_clip["flipped"], device="cpu")
    plain = clip_scores(images, cands, refs, model_id=tiny_clip["plain"], device="cpu")
    np.testing.assert_allclose(plain["cos"], -out["cos"], atol=1e-5)
    assert np.all(out["cos"] > 0) and np.all(plain["clip_s"] == 0) and np.all(plain["refclip_s"] == 0)
    # by hand: CLIPModel.forward's own normalised embeddings, not the module's code path
    model, proc = load_clip(tiny_clip["flipped"], "cpu")
    with torch.no_grad():
        text = proc.tokenizer([PREFIX + c for c in cands], return_tensors="pt", padding=True, truncation=True,
                              max_length=77)
        pixels = proc.image_processor(images=images, return_tensors="pt")["pixel_values"]
        o = model(input_ids=text["input_ids"], attention_mask=text["attention_mask"], pixel_values=pixels)
    cos = (o.text_embeds * o.image_embeds).sum(-1).numpy()
    np.testing.assert_allclose(out["cos"], cos, atol=1e-5)
    np.testing.assert_allclose(out["clip_s"], W * np.clip(cos, 0, None), atol=1e-5)
    # RefCLIP-S: harmonic mean of CLIP-S and the best clipped reference cosine
    with torch.no_grad():
        def t(xs):
            enc = proc.tokenizer([PREFIX + x for x in xs], return_tensors="pt", padding=True, truncation=True,
                                 max_length=77)
            return model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                         pixel_values=pixels[:1]).text_embeds

        best = np.array([max(float((t(r) @ t([c]).T).max()), 0.0) for c, r in zip(cands, refs)])
    expected = np.where(out["clip_s"] + best > 0, 2 * out["clip_s"] * best / np.maximum(out["clip_s"] + best, 1e-12), 0)
    np.testing.assert_allclose(out["refclip_s"], expected, atol=1e-5)
    assert out["n_truncated"] == 1  # the 90-character caption (one token per character) exceeds 77
    assert np.all(out["refclip_s"] <= np.maximum(out["clip_s"], best) + 1e-6)


def test_clip_and_bleurt_unavailable_reasons(monkeypatch):
    from medcap_utils.metrics.bleurt import bleurt_scores
    from medcap_utils.metrics.clipscore import load_clip

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MetricUnavailable, match="clip-vit-base-patch32"):
        load_clip(device="cpu")
    with pytest.raises(MetricUnavailable, match="bleurt"):
        bleurt_scores(["a"], ["a"])


def test_reused_scorer_equals_fresh_bert_score_with_and_without_idf():
    """The scorer is cached across calls; switching idf on and off must match fresh bert_score scorers."""
    from bert_score import BERTScorer

    from medcap_utils.metrics import bertscore as bs

    cands = ["ct of the chest shows a nodule", "mri of the knee", "ultrasound of the liver"]
    refs = ["ct chest with a small nodule in the right lobe", "knee mri sagittal", "abdominal ultrasound liver cyst"]
    idf_docs = refs + ["ct of the abdomen", "x-ray of the chest"]
    path = bs.minilm_path()
    for idf in (True, False, True):
        ours = bs.bertscore(cands, refs, model_type=path, num_layers=6, idf=idf, idf_sents=idf_docs if idf else None,
                            device="cpu")
        fresh = BERTScorer(model_type=path, num_layers=6, idf=idf, idf_sents=idf_docs if idf else None, device="cpu")
        _, _, f = fresh.score(cands, refs)
        np.testing.assert_allclose(ours["f1"], f.numpy(), rtol=1e-6)
    # one scorer for this model, layer count and device, whatever idf did (other tests may cache other layers)
    assert len([k for k in bs._SCORERS if k[:2] == (path, 6) and k[-1] == "cpu"]) == 1


def test_embedding_cache_is_per_model_object_and_exact():
    """Cached embeddings: a second call with shared references equals an uncached computation, and
    a different model object never reads another's entries."""
    import bert_score.utils as utils
    from bert_score import BERTScorer

    from medcap_utils.metrics import bertscore as bs

    path = bs.minilm_path()
    refs = ["ct of the chest shows a nodule", "mri of the knee", "pet of the whole body"]
    first = bs.bertscore(["a b c", "mri knee", "pet scan"], refs, model_type=path, num_layers=6, device="cpu")
    cached_before = len(bs._EMBEDDINGS)
    second = bs.bertscore(["ct chest nodule", "mri knee", "pet"], refs, model_type=path, num_layers=6, device="cpu")
    assert len(bs._EMBEDDINGS) == cached_before + 2  # only the two new candidates were encoded
    uncached = BERTScorer(model_type=path, num_layers=6, device="cpu")
    assert getattr(utils.get_bert_embedding, "medcap_cached", False)  # the new scorer goes through the cache too,
    _, _, f = uncached.score(["ct chest nodule", "mri knee", "pet"], refs)
    np.testing.assert_allclose(second["f1"], f.numpy(), rtol=1e-5)
    assert first["f1"][1] == pytest.approx(second["f1"][1])


def test_bertscore_does_not_depend_on_its_batch():
    """A short generic candidate ("number") beside long captions: bert_score's own batched matching
    lets padding lift its score; ours gives each pair its alone-value in every batch arrangement."""
    from bert_score import BERTScorer

    path = bs.minilm_path()
    refs = ["neck ct showing a left lymph node with central necrosis and a fat plane",
            "coronal ct pelvis with contrast shows a large mass arising from the right ovary", "number"]
    cands = ["number", "the", "coronal ct pelvis with contrast shows a mass"]
    alone_ref = BERTScorer(model_type=path, num_layers=6, device="cpu")
    alone = np.array([alone_ref.score([c], [r])[2].item() for c, r in zip(cands, refs)])
    batched_lib = alone_ref.score(cands, refs)[2].numpy()
    assert np.abs(batched_lib - alone).max() > 1e-3  # the padding effect exists for these pairs
    for batch_size in (1, 2, 3):
        ours = bs.bertscore(cands, refs, model_type=path, num_layers=6, batch_size=batch_size, device="cpu")["f1"]
        np.testing.assert_allclose(ours, alone, atol=1e-6)
    reordered = bs.bertscore(cands[::-1], refs[::-1], model_type=path, num_layers=6, device="cpu")["f1"][::-1]
    np.testing.assert_allclose(reordered, alone, atol=1e-6)
