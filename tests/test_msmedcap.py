"""MSMedCap (seed 003): dual frozen encoders, two Q-Formers, frozen OPT; stage-1 objectives and masks."""
from __future__ import annotations

import pytest
import torch

from medcap_utils.models import msmedcap as M
from medcap_utils.models import msmedcap_parts as P
from medcap_utils.training.msmedcap_pretrain import additive_mask, itg_allowed, stage1_losses

CAPTIONS = [
    "Axial CT of the chest shows a nodule in the right lung.",
    "Brain MRI with a lesion in the left frontal lobe (arrow).",
    "Chest X-ray without abnormality.",
    "Abdominal ultrasound showing a cyst in the liver.",
    "Coronary angiography with a stenosis of the left artery.",
    "PET image of the whole body with increased uptake.",
]


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    root = tmp_path_factory.mktemp("msmedcap_parts")
    return M.build_demo_parts(root, CAPTIONS * 4, image_size=32, patch_size=8, hidden=32, layers=2, heads=2,
                              sam_channels=16, lm_hidden=32, lm_layers=1, seed=0)


def settings(**extra):
    return M.demo_settings(num_query_tokens=4, hidden=32, layers=2, heads=2, embed_dim=16) | extra


def assemble(parts, variant="msmedcap", **extra):
    torch.manual_seed(0)
    return M.assemble_msmedcap(variant, clip=parts["clip"], sam=parts["sam"], lm=parts["lm"],
                               tokenizer=parts["tokenizer"], qformer_tokenizer=parts["qformer_tokenizer"],
                               settings=settings(**extra)).eval()


def images(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 32, 32, 3), dtype=torch.uint8, generator=g)


def test_shapes_and_feature_layouts(parts):
    model = assemble(parts)
    feats = model.encode(images(2))
    assert feats["clip"].shape == (2, 1 + 16, 32)  # CLS + 4x4 patches, hidden 32
    assert feats["sam"].shape == (2, 16, 16)  # authors' layout: 16 channel tokens of 4x4 = 16 values
    spatial = assemble(parts, sam_tokens="spatial")
    assert spatial.encode(images(2))["sam"].shape == (2, 16, 16)
    assert spatial.branches["sam"].qformer.config.encoder_hidden_size == 16
    q = model.query_embeddings(images(2))
    lm_hidden = model.language_model.get_input_embeddings().embedding_dim
    assert q["clip"].shape == q["sam"].shape == (2, 4, lm_hidden)
    batch = model.caption_batch(CAPTIONS[:2])
    out = model(images(2), **batch)
    assert out.logits.shape == (2, 8 + batch["input_ids"].shape[1], len(model.tokenizer))


def test_lm_input_order_clip_then_sam_then_text(parts):
    model = assemble(parts)
    imgs, batch = images(2), model.caption_batch(CAPTIONS[:2])
    inputs = model.lm_inputs(imgs, batch["input_ids"], batch["attention_mask"], batch["labels"])
    seg = inputs["segments"]
    assert (seg["clip"], seg["sam"]) == (slice(0, 4), slice(4, 8))
    assert seg["text"] == slice(8, 8 + batch["input_ids"].shape[1])
    q = model.query_embeddings(imgs)
    emb = inputs["inputs_embeds"]
    torch.testing.assert_close(emb[:, seg["clip"]], q["clip"])
    torch.testing.assert_close(emb[:, seg["sam"]], q["sam"])
    torch.testing.assert_close(emb[:, seg["text"]], model.language_model.get_input_embeddings()(batch["input_ids"]))
    assert not torch.allclose(q["clip"], q["sam"])  # the two branches are different modules
    assert inputs["attention_mask"][:, :8].eq(1).all()
    only_clip = assemble(parts, "blip2")
    assert only_clip.encoder_order == ["clip"] and only_clip.variant == "blip2"
    assert only_clip.lm_inputs(imgs, batch["input_ids"], batch["attention_mask"])["segments"]["text"].start == 4
    assert assemble(parts, "sam_blip2").encoder_order == ["sam"]


def test_labels_ignore_queries_prompt_and_padding(parts):
    model = assemble(parts, prompt="axial ct")
    tok = model.tokenizer
    batch = model.caption_batch(["brain mri", "chest x-ray without abnormality"])
    n_prompt = len(tok("axial ct")["input_ids"])
    assert n_prompt == 3  # <s> axial ct
    assert batch["labels"][:, :n_prompt].eq(-100).all()
    assert batch["labels"][:, n_prompt].ne(-100).all()  # the first caption token is learned
    pad = batch["attention_mask"] == 0
    assert pad.any() and batch["labels"][pad].eq(-100).all()
    last = batch["attention_mask"][0].sum() - 1
    assert batch["labels"][0, last] == tok.eos_token_id  # the end token is a target
    inputs = model.lm_inputs(images(2), batch["input_ids"], batch["attention_mask"], batch["labels"])
    assert inputs["labels"][:, :8].eq(-100).all()
    torch.testing.assert_close(inputs["labels"][:, 8:], batch["labels"])


def test_only_qformers_queries_and_projections_train(parts):
    model = assemble(parts).train()
    for module in [*model.encoders.values(), model.language_model]:
        assert not any(p.requires_grad for p in module.parameters())
        assert not module.training  # frozen parts stay in eval mode (no dropout)
    trainable = {id(p) for p in model.trainable_parameters()}
    names = {n for n, p in model.named_parameters() if id(p) in trainable}
    assert names and all(n.startswith("branches.") for n in names)
    assert {n.split(".")[2] for n in names} == {"query_tokens", "qformer", "to_lm"}
    out = model(images(2), **model.caption_batch(CAPTIONS[:2]))
    out.loss.backward()
    assert all(p.grad is None for m in [*model.encoders.values(), model.language_model] for p in m.parameters())
    assert model.branches["sam"].query_tokens.grad is not None and model.branches["clip"].to_lm.weight.grad is not None


def test_itg_mask_rules():
    text_mask = torch.tensor([[1, 1, 1, 0]])
    allowed = itg_allowed(2, text_mask)[0]
    assert allowed[:2, :2].all() and not allowed[:2, 2:].any()  # queries: queries only, never text
    assert allowed[2:, :2].all()  # text sees every query
    text = allowed[2:, 2:]
    assert not torch.triu(text, diagonal=1).any()  # no text token sees a later one
    assert text[2, :3].all() and not text[:, 3].any()  # previous text yes, padding never
    mask = additive_mask(itg_allowed(2, text_mask))
    assert mask.shape == (1, 1, 6, 6) and mask[0, 0, 0, 2] < -1e30 and mask[0, 0, 3, 2] == 0


def test_itg_mask_in_the_qformer(parts):
    """Changing a later text token changes neither the queries nor earlier text positions."""
    model = assemble(parts)
    branch = model.branches["clip"]
    feats = model.encode(images(1))["clip"]
    ids = model.qformer_tokenizer(["ct of the chest with a nodule"], return_tensors="pt")["input_ids"]
    ids2 = ids.clone()
    ids2[0, 4] = (ids[0, 4] + 7) % len(model.qformer_tokenizer)
    mask = torch.ones_like(ids)

    def run(token_ids):
        joint = branch.text_embeddings(input_ids=token_ids, query_embeds=branch.query_tokens)
        return branch.qformer(query_embeds=joint, query_length=4, encoder_hidden_states=feats,
                              attention_mask=additive_mask(itg_allowed(4, mask))).last_hidden_state[0]

    a, b = run(ids), run(ids2)
    torch.testing.assert_close(a[:4 + 4], b[:4 + 4])  # 4 queries + text positions 0..3
    assert not torch.allclose(a[4 + 4], b[4 + 4])


def test_stage1_losses_finite_and_trainable(parts):
    model = assemble(parts)
    branch = model.branches["sam"]
    enc = model.qformer_tokenizer(CAPTIONS[:4], padding="longest", return_tensors="pt")
    feats = model.encode(images(4))["sam"]
    for negatives in ("hard", "random"):
        losses = stage1_losses(branch, feats, enc["input_ids"], enc["attention_mask"],
                               model.qformer_tokenizer.bos_token_id, negatives,
                               generator=torch.Generator().manual_seed(0))
        assert set(losses) == {"itc", "itm", "itg", "loss"}
        assert all(torch.isfinite(v) for v in losses.values())
    losses["loss"].backward()
    for name in ("query_tokens", "vision_proj", "text_proj", "itm_head", "lm_head", "temp"):
        param = getattr(branch, name)
        grad = param.grad if isinstance(param, torch.nn.Parameter) else param.weight.grad
        assert grad is not None and torch.isfinite(grad).all(), name
    # ITC with 4 pairs and uniform similarity would be log(4); ITM with 1:2 labels ~ its entropy
    assert 0.5 < losses["itc"].item() < 3 and 0.3 < losses["itm"].item() < 1.5


def test_save_load_round_trip_by_path(parts, tmp_path):
    model = assemble(parts)
    with torch.no_grad():
        model.branches["clip"].query_tokens.add_(0.5)  # not the initial weights
    model.save_pretrained(tmp_path / "saved")
    loaded = M.load_msmedcap(tmp_path / "saved")
    assert loaded.variant == "msmedcap" and (tmp_path / "saved" / "language_model" / "config.json").exists()
    batch = model.caption_batch(CAPTIONS[:2])
    with torch.no_grad():
        torch.testing.assert_close(loaded(images(2), **batch).logits, model(images(2), **batch).logits,
                                   rtol=0, atol=0)


def test_generation_depends_on_the_image(parts):
    model = assemble(parts)
    # At random initialisation the cross-attention is nearly uniform and its weights small, so the queries
    # average the image away and a random LM answers every image alike. Louder cross-attention and
    # projection make the image reach the LM, which is what this test is about.
    with torch.no_grad():
        for b in model.branches.values():
            for layer in b.qformer.encoder.layer:
                cross = layer.crossattention
                for lin in (cross.attention.key, cross.attention.value, cross.output.dense):
                    lin.weight.mul_(20)
            b.to_lm.weight.mul_(20)
    imgs = torch.stack([torch.zeros(32, 32, 3), torch.full((32, 32, 3), 255.0), *images(4).float()]).to(torch.uint8)
    enc = model.tokenizer([model.settings["prompt"]] * 6, return_tensors="pt")
    inputs = model.lm_inputs(imgs, enc["input_ids"], enc["attention_mask"])
    inputs.pop("segments")
    with torch.no_grad():
        next_token = model.language_model(**inputs).logits[:, -1]
    assert (next_token[1:] - next_token[0]).abs().amax(dim=1).gt(1e-6).all()  # every image moves the LM
    caps = model.generate(imgs, num_beams=2, max_new_tokens=6, repetition_penalty=1.0)
    assert len(caps) == 6 and model.generate(imgs, num_beams=2, max_new_tokens=6, repetition_penalty=1.0) == caps


@pytest.mark.xfail(strict=False, reason="a frozen random toy OPT is barely steerable by the prefix; needs a "
                   "text-pretrained toy LM as in notebook 06 (open item)")
def test_short_training_overfits_a_batch(parts):
    model = assemble(parts).train()
    # A random OPT's logits barely depend on its input (0.02-scale tied embeddings); a larger embedding
    # scale gives the frozen LM a usable output layer, standing in for a pre-trained one.
    with torch.no_grad():
        model.language_model.get_input_embeddings().weight.mul_(25)
    imgs, batch = images(6), model.caption_batch(CAPTIONS)
    opt = torch.optim.AdamW(model.trainable_parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = model(imgs, **batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < 0.7 * losses[0]


def test_branch_init_from_bert(tmp_path):
    from transformers import BertConfig, BertModel

    bert = BertModel(BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=64), add_pooling_layer=False)
    bert.save_pretrained(tmp_path / "bert")
    qcfg = M.Blip2QFormerConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                encoder_hidden_size=16, use_qformer_text_input=True, vocab_size=52,
                                cross_attention_frequency=2)
    branch = P.QFormerBranch(qcfg, 4, 32, 16)
    missing = P.init_branch_from_bert(branch, tmp_path / "bert")
    layer = branch.qformer.encoder.layer[1]
    torch.testing.assert_close(layer.attention.attention.query.weight,
                               bert.encoder.layer[1].attention.self.query.weight)
    torch.testing.assert_close(layer.intermediate_query.dense.weight, bert.encoder.layer[1].intermediate.dense.weight)
    torch.testing.assert_close(branch.text_embeddings.word_embeddings.weight[:50],
                               bert.embeddings.word_embeddings.weight)
    assert missing and all(".crossattention." in k for k in missing)  # only cross-attention stays random


def test_clip_branch_from_a_blip2_checkpoint(tmp_path):
    """The authors' "G" CLIP Q-Former: BLIP-2's vision tower, Q-Former, queries and projection."""
    from transformers import Blip2Config, Blip2ForConditionalGeneration, OPTConfig

    cfg = Blip2Config(vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2,
                                         image_size=32, patch_size=8, initializer_range=0.02),
                      qformer_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                          intermediate_size=64,
                                          encoder_hidden_size=32, cross_attention_frequency=1),
                      text_config=OPTConfig(hidden_size=32, num_hidden_layers=1, ffn_dim=64, num_attention_heads=2,
                                            vocab_size=100, word_embed_proj_dim=32).to_dict(), num_query_tokens=4)
    blip2 = Blip2ForConditionalGeneration(cfg)
    blip2.save_pretrained(tmp_path / "blip2")
    tower = P.load_clip_vision(tmp_path / "blip2")
    torch.testing.assert_close(tower.embeddings.patch_embedding.weight,
                               blip2.vision_model.embeddings.patch_embedding.weight)
    parts = P.load_blip2_parts(tmp_path / "blip2")
    qcfg = M.Blip2QFormerConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                encoder_hidden_size=32, use_qformer_text_input=True, cross_attention_frequency=1)
    branch = P.QFormerBranch(qcfg, 4, 32, 16)
    missing = P.init_branch_from_blip2(branch, parts)
    torch.testing.assert_close(branch.query_tokens, blip2.query_tokens)
    torch.testing.assert_close(branch.to_lm.weight, blip2.language_projection.weight)
    assert missing and all(".intermediate." in k or ".output." in k for k in missing)  # text feed-forward only


def test_notebook_parameters_override_a_stage_only_when_set():
    """Issue 17: notebook 06's 0 defaults keep the recipe section's values; a set parameter wins."""
    from medcap_utils.experiments.msmedcap import load_recipe, stage_config

    train = load_recipe("configs/recipes/msmedcap-2024.yaml", "demo")["stage2"]["train"]
    kept = stage_config(train, 0, 0, seed=3)
    assert (kept.epochs, kept.batch_size, kept.seed) == (train["epochs"], train["batch_size"], 3)
    changed = stage_config(train, epochs=7, batch_size=5)
    assert (changed.epochs, changed.batch_size, changed.lr) == (7, 5, train["lr"])
