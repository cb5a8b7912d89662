"""The explainable attention-LSTM captioner (seed 004): shapes, attention, decoding, training, demo."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import ResNetModel

from medcap_utils.analysis.explain import attention_hit_rate
from medcap_utils.data.augment import FlipCropConfig, center_crop, random_flip_crop
from medcap_utils.decoding.config import DecodingConfig
from medcap_utils.models.lstm_captioner import (
    LSTMCaptioner,
    LSTMCaptionerConfig,
    load_visual_encoder,
    small_resnet_config,
)

V, L = 30, 5


def tiny_model(tmp_path=None, freeze=False, seed=0, deep_output=False) -> LSTMCaptioner:
    torch.manual_seed(seed)
    encoder = ResNetModel(small_resnet_config(8))
    if tmp_path is not None:  # through the same from_pretrained loader as microsoft/resnet-50
        encoder.save_pretrained(tmp_path / "resnet")
        encoder = load_visual_encoder(tmp_path / "resnet")
    cfg = LSTMCaptionerConfig(vocab_size=V, num_labels=L, embed_dim=16, semantic_dim=16, attention_dim=16,
                              decoder_dim=32, dropout=0.0, freeze_encoder=freeze, deep_output=deep_output)
    return LSTMCaptioner(cfg, encoder)


def batch(B=3, T=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, V, (B, T), generator=g)
    ids[:, 0] = 1
    lengths = [T, T - 2, T - 3][:B]
    for b, n in enumerate(lengths):
        ids[b, n - 1] = 2
        ids[b, n:] = 0
    return torch.randn(B, 3, 32, 32, generator=g), ids


def test_shapes_and_attention_is_a_distribution(tmp_path):
    model = tiny_model(tmp_path)
    x, ids = batch()
    out = model(x, ids)
    grid = model.encode_image(x)[1]
    assert grid == (4, 4)  # 32 px / 8
    assert out["logits"].shape == (3, ids.shape[1] - 1, V)
    assert out["alphas"].shape == (3, ids.shape[1] - 1, 16)
    assert out["label_logits"].shape == (3, L)
    assert torch.allclose(out["alphas"].sum(-1), torch.ones(3, ids.shape[1] - 1), atol=1e-5)
    assert (out["alphas"] >= 0).all()
    # Word importance: a distribution over the caption's words only (<start> included, pads/<end> not).
    w = out["word_weights"]
    assert torch.allclose(w.sum(-1), torch.ones(3), atol=1e-5)
    assert (w[1, ids.shape[1] - 3:] == 0).all()


def test_semantic_feature_is_causal_no_target_leak():
    model = tiny_model().eval()
    x, ids = batch(B=1)
    changed = ids.clone()
    changed[0, 5] = (ids[0, 5] + 1 - 4) % (V - 4) + 4  # change one later word
    a, b = model(x, ids)["logits"], model(x, changed)["logits"]
    # Steps 0..4 read ids 0..4 only, so their predictions cannot depend on id 5.
    assert torch.allclose(a[0, :5], b[0, :5], atol=1e-6)
    assert not torch.allclose(a[0, 5:], b[0, 5:])


def test_incremental_semantic_state_matches_teacher_forcing():
    model = tiny_model().eval()
    _, ids = batch(B=2)
    emb = model.embed(ids)
    states, scores, _ = model.semantic.states(emb)
    full = model.semantic.causal_pool(states, scores, torch.ones_like(ids, dtype=torch.bool))
    gru_h, st, sc = None, [], []
    for t in range(ids.shape[1]):
        step, gru_h = model._semantic_step(ids[:, t], gru_h, st, sc)
        assert torch.allclose(step, full[:, t], atol=1e-5)


@pytest.mark.parametrize("deep_output", [False, True])
def test_beam_of_one_equals_greedy_and_beam_is_at_least_as_likely(deep_output):
    model = tiny_model(seed=3, deep_output=deep_output).eval()
    x, _ = batch(B=3, seed=4)
    greedy = model.greedy(x, max_len=10)
    beam1 = model.beam_search(x, beam_size=1, max_len=10)
    for g, b in zip(greedy["ids"].tolist(), beam1["ids"].tolist()):
        cut = lambda s: s[: s.index(2) + 1] if 2 in s else s  # noqa: E731
        assert cut(g) == cut(b)
    assert torch.allclose(greedy["alphas"][0, :3], beam1["alphas"][0, :3], atol=1e-5)
    beam3 = model.beam_search(x, beam_size=3, max_len=10)
    assert beam3["alphas"].shape[-1] == 16
    assert torch.allclose(beam3["alphas"][beam3["ids"] != 0].sum(-1), torch.tensor(1.0), atol=1e-5)

    def logprob(ids):  # total log-probability of a decoded sequence under teacher forcing
        full = torch.cat([torch.ones(ids.shape[0], 1, dtype=torch.long), ids], 1)
        out = model(x, full)["logits"].log_softmax(-1)
        lp = out.gather(-1, ids[..., None])[..., 0]
        keep = torch.ones_like(ids, dtype=torch.bool)
        for r, row in enumerate(ids.tolist()):
            if 2 in row:
                keep[r, row.index(2) + 1:] = False
        return (lp * keep).sum(1)

    assert (logprob(beam3["ids"]) >= logprob(greedy["ids"]) - 1e-4).all()


def test_deep_output_reads_the_attended_context():
    """Show-Attend-Tell's deep output: the step's attended context reaches the logits directly,
    not only through the LSTM state."""
    model = tiny_model(deep_output=True).eval()
    x, ids = batch(B=1)
    base = model(x, ids)["logits"]
    with torch.no_grad():
        model.context_out.weight.zero_()
    assert not torch.allclose(base, model(x, ids)["logits"])
    assert model.context_out.in_features == model.encoder.config.hidden_sizes[-1]


def test_attention_override_replaces_only_that_step():
    """The counterfactual probe's hook: step 2 attends where it is told, earlier steps are untouched,
    and the word at step 2 is read from the context of the cell it was told to look at."""
    model = tiny_model(deep_output=True).eval()
    x, ids = batch()
    with torch.no_grad():
        own = model(x, ids)
        N = own["alphas"].shape[-1]
        outs = [model(x, ids, attention_override={2: torch.nn.functional.one_hot(
            torch.full((3,), k), N).float()}) for k in (0, N - 1)]
    for out, k in zip(outs, (0, N - 1)):
        assert torch.equal(out["alphas"][:, :2], own["alphas"][:, :2])
        assert torch.equal(out["logits"][:, :2], own["logits"][:, :2])
        assert torch.all(out["alphas"][:, 2, k] == 1.0)
    # Two different cells give two different words' distributions at step 2 (the context is used).
    assert not torch.allclose(outs[0]["logits"][:, 2], outs[1]["logits"][:, 2], atol=1e-4)


def test_counterfactual_probe_rows_and_a_model_that_cannot_look(demo_root):
    """A model whose attention scores are all zero attends uniformly, so its own attention and the
    forced uniform attention give the same likelihood; looking at the box gives another one."""
    from medcap_utils.data.text_preprocessing import CaptionTextConfig
    from medcap_utils.experiments import explainable_lstm_captioner as xai

    text = CaptionTextConfig(stem=False, remove_stop_words=False, min_freq=1, max_len=40)
    test = xai.split_frame(demo_root, "test")
    vocab = text.build_vocab(test["caption"])
    torch.manual_seed(0)
    model = LSTMCaptioner(LSTMCaptionerConfig(vocab_size=len(vocab), num_labels=1, embed_dim=8, semantic_dim=8,
                                              attention_dim=8, decoder_dim=8, dropout=0.0, deep_output=True),
                          ResNetModel(small_resnet_config(8, (1,))))
    torch.nn.init.zeros_(model.attention.out.weight)
    images = np.random.default_rng(0).integers(0, 256, (len(test), 32, 32, 3), dtype=np.uint8)
    gt = dict(zip(test["id"], test["caption"]))
    boxes = xai.finding_boxes(demo_root, "test")
    found = xai.finding_word_attention(model, vocab, text, images, list(test["id"]), gt, boxes)
    df = xai.finding_word_counterfactual(model, vocab, text, images, list(test["id"]), gt, boxes)
    assert list(df["id"].unique()) == found["ids"]
    assert len(df) == 4 * len(found["ids"]) and set(df["probe"]) == set(xai.COUNTERFACTUALS)
    nll = df.pivot(index="id", columns="probe", values="nll")
    assert (nll > 0).all().all()
    np.testing.assert_allclose(nll["own attention"], nll["uniform attention"], rtol=1e-5)
    assert (nll["attention on the box"] - nll["own attention"]).abs().mean() > 1e-4
    assert (nll["another image"] - nll["own attention"]).abs().mean() > 1e-4


def test_teacher_forced_loss_decreases_on_tiny_overfit():
    model = tiny_model()
    x, ids = batch()
    labels = torch.tensor([[1, 0, 0, 1, 0], [0, 1, 0, 0, 0], [0, 0, 1, 1, 1]])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(60):
        parts = model.loss(x, ids, labels, alpha_c=0.0)
        opt.zero_grad()
        parts["loss"].backward()
        opt.step()
        first = first if first is not None else {k: v.item() for k, v in parts.items()}
    assert parts["ce"].item() < 0.3 * first["ce"]
    assert parts["semantic_bce"].item() < 0.5 * first["semantic_bce"]
    model.eval()
    assert (model.greedy(x, max_len=10)["ids"][:, :4] == ids[:, 1:5]).float().mean() > 0.8


def test_frozen_encoder_gets_no_gradient_and_save_load_round_trip(tmp_path):
    model = tiny_model(freeze=True)
    x, ids = batch()
    model.loss(x, ids)["loss"].backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert model.head.weight.grad is not None
    model.save(tmp_path / "m", extra={"note": 1})
    loaded, extra = LSTMCaptioner.load(tmp_path / "m")
    model.eval()
    assert extra == {"note": 1}
    assert torch.equal(loaded.greedy(x, max_len=6)["ids"], model.greedy(x, max_len=6)["ids"])


def test_flips_and_centre_crop_on_uint8():
    img = torch.zeros(2, 8, 8, 3, dtype=torch.uint8)
    img[:, 0, 0] = 255  # top-left pixel
    always = FlipCropConfig(hflip_p=1.0, vflip_p=0.0, crop_p=0.0)
    out = random_flip_crop(img, always)
    assert out.dtype == torch.uint8 and out.shape == img.shape
    assert (out[:, 0, 7] == 255).all() and (out[:, 0, 0] == 0).all()
    out = random_flip_crop(img, FlipCropConfig(hflip_p=0.0, vflip_p=1.0, crop_p=0.0))
    assert (out[:, 7, 0] == 255).all()
    chw = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    crop = center_crop(chw, 0.5)
    assert crop.shape == chw.shape
    assert crop.min() >= chw[..., 2:6, 2:6].min() - 1e-4  # only the centre survives
    none = random_flip_crop(img, FlipCropConfig(hflip_p=0.0, vflip_p=0.0, crop_p=0.0))
    assert torch.equal(none, img)


def test_attention_hit_rate_counts_peaks_in_boxes():
    att = np.zeros((2, 4, 4))
    att[0, 0, 3] = 1.0  # top-right cell
    att[1, 3, 0] = 1.0  # bottom-left cell
    out = attention_hit_rate([att, att], [(0.5, 0.0, 1.0, 0.5), (0.5, 0.0, 1.0, 0.5)], steps=[[0], [1]])
    assert out["hit_rate"] == 0.5 and out["n"] == 2
    assert out["chance_area"] == pytest.approx(0.25) and out["chance_peak"] == pytest.approx(0.25)
    assert out["attention_mass"] == pytest.approx(0.5)
    # A box covering half a cell: the peak in that cell counts, uniform attention puts the area there.
    uniform = attention_hit_rate([np.ones((1, 4, 4))], [(0.0, 0.0, 0.125, 0.25)])
    assert uniform["attention_mass"] == pytest.approx(uniform["chance_area"]) == pytest.approx(0.03125)
    assert uniform["chance_peak"] == pytest.approx(1 / 16)


# ---- demo: trained on the synthetic data -------------------------------------------------------

@pytest.fixture(scope="module")
def train_root(tmp_path_factory):
    """600/100/100 demo images (seed 0): the 240-image session fixture is too few for the decoder to
    learn where findings are (its grounding on held-out images swung between chance and 2x by seed)."""
    from medcap_utils.data.synth import synthesize

    root = tmp_path_factory.mktemp("xai-train")
    synthesize(root, seed=0, n_train=600, n_valid=100, n_test=100)
    return root


@pytest.fixture(scope="module")
def demo_run(train_root, tmp_path_factory):
    """The demo recipe trained on ``train_root`` (one torch thread, ~1 min on 2 shared cores)."""
    from medcap_utils.experiments import explainable_lstm_captioner as xai
    from medcap_utils.paths import repo_root

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    recipe = xai.load_recipe(repo_root() / "configs/recipes/xai-lstm-2021.yaml", "demo")
    recipe["train"].update(epochs=20)  # 600 images: as many steps as the recipe's 10 epochs on 1,200
    out = xai.train_captioner(train_root, recipe, tmp_path_factory.mktemp("xai"))
    test = xai.split_frame(train_root, "test")
    cache = xai.get_image_cache(train_root, "test", recipe["model"]["image_size"])
    images = cache.images[[cache.index[i] for i in test["id"]]]
    yield xai, recipe, out, test, images
    torch.set_num_threads(threads)


def untrained_model(xai, recipe, vocab, labels, out_dir, seed=0):
    """The demo architecture with fresh random weights (the baseline a trained model must beat)."""
    torch.manual_seed(seed)
    return xai.build_model(vocab, labels, xai._encoder_path(recipe["model"], out_dir), False,
                           {k: recipe["model"][k] for k in xai._MODEL_KEYS if k in recipe["model"]})


@pytest.mark.slow
def test_demo_model_beats_untrained_and_most_frequent_caption(demo_run, train_root):
    from medcap_utils.evaluation.baselines import most_frequent_caption

    xai, recipe, out, test, images = demo_run
    gt = dict(zip(test["id"], test["caption"]))
    ids = list(test["id"])
    trained = xai.generate(out["model"], out["vocab"], images, ids, DecodingConfig(max_new_tokens=28)).captions
    fresh = untrained_model(xai, recipe, out["vocab"], out["labels"], train_root.parent / "xai-fresh")
    untrained = xai.generate(fresh, out["vocab"], images, ids, DecodingConfig(max_new_tokens=28)).captions
    frequent = {i: most_frequent_caption(xai.split_frame(train_root, "train")["caption"]) for i in ids}
    from medcap_utils.evaluation.scores import score_row

    bleu4 = {name: score_row(gt, {i: pred.get(i, "") for i in gt}, metrics=("Bleu_4",))["Bleu_4"]
             for name, pred in [("trained", trained), ("untrained", untrained), ("frequent", frequent)]}
    paper = {name: xai.imageclef_bleu(gt, pred)["bleu"]
             for name, pred in [("trained", trained), ("untrained", untrained), ("frequent", frequent)]}
    assert bleu4["trained"] > 0.05
    assert bleu4["trained"] > 2 * max(bleu4["untrained"], bleu4["frequent"]), bleu4
    assert paper["trained"] > max(paper["untrained"], paper["frequent"]), paper
    # The validation BLEU history exists and the chosen epoch is its best.
    hist = out["history"]
    assert out["best"]["val_bleu"] == pytest.approx(hist["val_bleu"].max())


def test_finding_word_steps_point_at_the_finding_and_location_words(demo_root):
    """The measured steps are the ones that emit the finding word and the side/location words after it."""
    from medcap_utils.data.text_preprocessing import CaptionTextConfig
    from medcap_utils.experiments import explainable_lstm_captioner as xai

    text = CaptionTextConfig(stem=False, remove_stop_words=False, min_freq=1, max_len=40)
    test = xai.split_frame(demo_root, "test")
    vocab = text.build_vocab(test["caption"])
    torch.manual_seed(0)
    model = LSTMCaptioner(LSTMCaptionerConfig(vocab_size=len(vocab), num_labels=1, embed_dim=8, semantic_dim=8,
                                              attention_dim=8, decoder_dim=8),
                          ResNetModel(small_resnet_config(8, (1,))))
    images = np.zeros((len(test), 32, 32, 3), dtype=np.uint8)
    boxes = xai.finding_boxes(demo_root, "test")
    gt = dict(zip(test["id"], test["caption"]))
    found = xai.finding_word_attention(model, vocab, text, images, list(test["id"]), gt, boxes)
    assert len(found["ids"]) >= 15
    with_location = 0
    for k, image_id in enumerate(found["ids"]):
        ids = vocab.encode(text.tokens(gt[image_id]), text.max_len)
        finding, box, where = boxes[image_id]
        assert found["maps"][k].shape == (len(ids) - 1, 8, 8)  # 32 px / 4, one map per step
        (step,) = found["steps"]["finding word"][k]
        assert vocab.itos[ids[step + 1]] == text.tokens(finding)[-1]  # step t emits token t + 1
        phrase = found["steps"]["finding + location"][k]
        assert phrase[0] == step and all(vocab.itos[ids[t + 1]] in text.tokens(where) for t in phrase[1:])
        with_location += len(phrase) > 1
    assert with_location >= 5


def test_training_is_a_function_of_the_recipe_seed(demo_root, tmp_path):
    """Two runs with the same recipe give the same weights whatever ran before in the process (the initial
    weights were once drawn from the global generator, so results depended on test order)."""
    from medcap_utils.experiments import explainable_lstm_captioner as xai
    from medcap_utils.paths import repo_root

    recipe = xai.load_recipe(repo_root() / "configs/recipes/xai-lstm-2021.yaml", "demo")
    recipe["train"].update(epochs=1, max_steps=2)
    weights = []
    for noise in (1, 2):  # the second run finds the saved random encoder and does not re-seed to write it
        torch.manual_seed(noise)  # a different global state before each run
        out = xai.train_captioner(demo_root, recipe, tmp_path / "run")
        weights.append(torch.cat([p.detach().flatten() for p in out["model"].parameters()]))
    assert torch.equal(weights[0], weights[1])


@pytest.fixture(scope="module")
def heldout_root(tmp_path_factory):
    """400 more demo images (seed 1) that the model never trained or selected on (~300 name a
    finding with a box, so a hit rate of 0.15 is known to about +-0.02)."""
    from medcap_utils.data.synth import synthesize

    root = tmp_path_factory.mktemp("heldout")
    synthesize(root, seed=1, n_train=0, n_valid=0, n_test=400)
    return root


def finding_grounding(xai, model, vocab, text, root, size) -> dict:
    """Peak-in-box rate and attention mass in the box at the step that emits the finding word,
    teacher-forced on ``root``'s test captions, with their chance levels."""
    test = xai.split_frame(root, "test")
    cache = xai.get_image_cache(root, "test", size)
    images = cache.images[[cache.index[i] for i in test["id"]]]
    gt = dict(zip(test["id"], test["caption"]))
    found = xai.finding_word_attention(model, vocab, text, images, list(test["id"]), gt,
                                       xai.finding_boxes(root, "test"))
    return attention_hit_rate(found["maps"], found["boxes"], steps=found["steps"]["finding word"])


def grounded(res: dict) -> bool:
    """The issue's criterion with a margin on the mass: the peak lands in the box at least 1.5x as
    often as a random cell's would, and the attention mass in the box is at least 1.25x the box's
    area share (what uniform attention puts there). The margin is needed because the hit rate alone
    is cheap: a random decoder's peak favours bright blobs, and in a probe one untrained decoder reached
    2.2x chance (mass 1.09x area; four untrained seeds: 0.89-1.09x). Trained demo models: 1.5-1.7x."""
    return res["hit_rate"] >= 1.5 * res["chance_peak"] and res["attention_mass"] >= 1.25 * res["chance_area"]


def test_untrained_attention_does_not_pass_the_grounding_check(demo_root, heldout_root, tmp_path):
    """The check can fail: the same architecture with random weights does not look at the finding."""
    from medcap_utils.experiments import explainable_lstm_captioner as xai
    from medcap_utils.paths import repo_root

    recipe = xai.load_recipe(repo_root() / "configs/recipes/xai-lstm-2021.yaml", "demo")
    text = xai.CaptionTextConfig(**recipe["text"])
    frame = xai.split_frame(demo_root, "train")
    vocab = text.build_vocab(frame["caption"])
    labels = xai.label_space(frame, vocab, text, "concepts", recipe["model"]["label_min_count"])
    for seed in (0, 1):
        model = untrained_model(xai, recipe, vocab, labels, tmp_path, seed=seed).eval()
        res = finding_grounding(xai, model, vocab, text, heldout_root, recipe["model"]["image_size"])
        assert res["n"] >= 200
        assert not grounded(res), res


@pytest.mark.slow
def test_demo_finding_word_is_read_from_the_image(demo_run, heldout_root):
    """The trained model names the finding from the image: with another image (same caption) the
    finding word becomes much less likely (held-out NLL 1.34-1.40 with its own image vs 2.50-2.76
    for three training seeds). Where in the image it reads it is the xfail test below."""
    xai, recipe, out, _, _ = demo_run
    test = xai.split_frame(heldout_root, "test")
    cache = xai.get_image_cache(heldout_root, "test", recipe["model"]["image_size"])
    images = cache.images[[cache.index[i] for i in test["id"]]]
    df = xai.finding_word_counterfactual(out["model"], out["vocab"], out["text"], images, list(test["id"]),
                                         dict(zip(test["id"], test["caption"])),
                                         xai.finding_boxes(heldout_root, "test"))
    mean = df.groupby("probe")[["nll", "top1"]].mean()
    assert df["id"].nunique() >= 200
    assert mean.loc["another image", "nll"] > mean.loc["own attention", "nll"] + 0.5, mean
    assert mean.loc["own attention", "top1"] > mean.loc["another image", "top1"] + 0.05, mean


@pytest.mark.slow
@pytest.mark.xfail(strict=False, reason="grounding is not robust to the training seed: with the initial weights "
                   "drawn from the recipe seed (earlier sweeps were not, and over-counted successes), held-out peak in "
                   "box / mass in box vs chance at the finding word was 1.9x / 1.4x for seed 0 but 1.6/0.9, 0.5/0.9, "
                   "0.6/0.7, 0.7/1.0, 1.3/1.0 for seeds 1, 2, 3, 4 and 42 (the recipe's); content-only attention "
                   "scores also passed 1 seed of 6; untrained models: mass 0.9-1.1x. Attention forced onto the "
                   "box names the finding worse than even attention (finding_word_counterfactual): the decoder "
                   "does not read the finding from the box. Frozen random encoders (no ImageNet weights offline) "
                   "swing the same way: mass 2.9x / 0.5x / 1.8x for seeds 0-2, 0.6x / 0.4x / 0.6x on 1,200 images. "
                   "The frozen ImageNet stand-in (resnet-classifier-general, frozen as the paper freezes ResNet-50; "
                   "same 600 images, 20 epochs) looks away from the finding: peak 0.13x / 0.25x / 0.06x, mass "
                   "0.78x / 0.67x / 0.78x for seeds 0-2 (notebook 07 measures it as a claims row)")
def test_demo_attention_lands_on_finding_more_often_than_chance(demo_run, heldout_root):
    xai, recipe, out, _, _ = demo_run
    res = finding_grounding(xai, out["model"], out["vocab"], out["text"], heldout_root,
                            recipe["model"]["image_size"])
    assert res["n"] >= 200
    assert grounded(res), res
