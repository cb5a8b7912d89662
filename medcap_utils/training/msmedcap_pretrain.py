"""MSMedCap stage 1 (seed 003 Sec. 2.2, Fig. 3): mixed semantic pre-training of each Q-Former alone.

One branch (queries + Q-Former) at a time, over its frozen image encoder, learns three BLIP-2 stage-1
objectives, each with its own self-attention mask over ``[queries, text]`` (cross-attention to the
image features is applied to the query positions only, as the paper stresses):

- ITC, image-text contrastive: queries alone (with the image) and text alone (no image, no queries);
  image feature = each query output through ``vision_proj``, text feature = the first text token
  through ``text_proj``, both L2-normalised; similarity = max over queries / learnable temperature
  (clamped to [0.001, 0.5]); symmetric cross-entropy over in-batch negatives, label smoothing 0.1
  (BLIP-2 / LAVIS values).
- ITM, image-text matching: queries and text see each other (bidirectional, padding masked). For each
  image one negative text and for each text one negative image, drawn from the in-batch ITC
  similarities with the positive pair excluded (``negatives="hard"``, BLIP-2) or uniformly among the
  other batch items (``"random"``). The ITM head's two logits are averaged over the query positions;
  cross-entropy over B positive and 2B negative pairs.
- ITG, image-grounded text generation: the first text token is replaced by the decoder token
  (``[DEC]``); queries see only queries, each text token sees all queries and the text up to itself.
  A linear language head on the text positions predicts the next token (label smoothing 0.1, padding
  ignored). Equivalent to BLIP-2's cached-query decoding because the queries never see the text.

The loss is ITC + ITM + ITG with equal weights (BLIP-2). Not implemented: BLIP-2 gathers features
from every GPU before ITC and negative sampling; here negatives come from the process's batch. Used by
notebook 06 through :func:`stage1_loss_fn` and ``medcap_utils.training.fit``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from medcap_utils.models.msmedcap import MSMedCap
from medcap_utils.models.msmedcap_parts import QFormerBranch

OBJECTIVES = ("itc", "itm", "itg")


def itg_allowed(n_query: int, text_mask: torch.Tensor) -> torch.Tensor:
    """Boolean ``(B, n_query + T, n_query + T)``: may row i attend to column j in ITG.

    Queries see all queries and no text; a text token sees all queries and non-padding text at or
    before its own position.
    """
    b, t = text_mask.shape
    n = n_query + t
    allowed = torch.zeros(b, n, n, dtype=torch.bool, device=text_mask.device)
    allowed[:, :, :n_query] = True
    causal = torch.tril(torch.ones(t, t, dtype=torch.bool, device=text_mask.device))
    allowed[:, n_query:, n_query:] = causal & text_mask.bool()[:, None, :]
    return allowed


def additive_mask(allowed: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    """Boolean ``(B, L, L)`` -> additive ``(B, 1, L, L)`` mask (0 where allowed, dtype min elsewhere),
    which ``Blip2QFormerModel`` passes to attention unchanged."""
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(
        ~allowed, torch.finfo(dtype).min)[:, None]


def text_features(branch: QFormerBranch, input_ids, attention_mask) -> torch.Tensor:
    """Normalised ITC text features from the text alone (unimodal mask, no queries, no image)."""
    emb = branch.text_embeddings(input_ids=input_ids)
    out = branch.qformer(query_embeds=emb, query_length=0, attention_mask=attention_mask).last_hidden_state
    return F.normalize(branch.text_proj(out[:, 0]), dim=-1)


def itc_similarities(branch: QFormerBranch, query_out, text_feat):
    """``(sim_i2t, sim_t2i)``: max over queries of cosine similarity, divided by the temperature."""
    image_feat = F.normalize(branch.vision_proj(query_out), dim=-1)  # (B, M, D)
    sim = torch.einsum("imd,td->itm", image_feat, text_feat).max(dim=-1).values  # (B_img, B_txt)
    temp = branch.temp.clamp(0.001, 0.5)
    return sim / temp, sim.t() / temp


def pick_negatives(sim: torch.Tensor, mode: str, generator=None) -> torch.Tensor:
    """For each row, a column index != the row's own: sampled from softmax(sim) (hard) or uniformly."""
    b = sim.shape[0]
    if b < 2:
        raise ValueError("ITM negatives need a batch of at least 2")
    if mode == "hard":
        weights = F.softmax(sim.detach().float(), dim=1) + 1e-5
    elif mode == "random":
        weights = torch.ones_like(sim, dtype=torch.float)
    else:
        raise ValueError("negatives must be 'hard' or 'random'")
    weights = weights.masked_fill(torch.eye(b, dtype=torch.bool, device=sim.device), 0)
    return torch.multinomial(weights, 1, generator=generator).squeeze(1)


def stage1_losses(branch: QFormerBranch, features: torch.Tensor, input_ids: torch.Tensor,
                  attention_mask: torch.Tensor, dec_token_id: int, negatives: str = "hard",
                  label_smoothing: float = 0.1, generator=None) -> dict[str, torch.Tensor]:
    """``{"itc", "itm", "itg", "loss"}`` for one batch of frozen image ``features`` (B, N, C) and
    Q-Former-tokenised captions (``input_ids`` start with ``[CLS]``)."""
    b = features.shape[0]
    n_q = branch.num_query_tokens
    queries = branch.query_tokens.expand(b, -1, -1)
    query_out = branch.qformer(query_embeds=queries, encoder_hidden_states=features).last_hidden_state

    # ITC
    text_feat = text_features(branch, input_ids, attention_mask)
    sim_i2t, sim_t2i = itc_similarities(branch, query_out, text_feat)
    targets = torch.arange(b, device=features.device)
    itc = (F.cross_entropy(sim_i2t, targets, label_smoothing=label_smoothing)
           + F.cross_entropy(sim_t2i, targets, label_smoothing=label_smoothing)) / 2

    # ITM: B positives, B (image, negative text), B (negative image, text)
    neg_text = pick_negatives(sim_i2t, negatives, generator)
    neg_image = pick_negatives(sim_t2i, negatives, generator)
    ids_all = torch.cat([input_ids, input_ids[neg_text], input_ids], dim=0)
    mask_all = torch.cat([attention_mask, attention_mask[neg_text], attention_mask], dim=0)
    feats_all = torch.cat([features, features, features[neg_image]], dim=0)
    q_all = branch.query_tokens.expand(3 * b, -1, -1)
    joint = branch.text_embeddings(input_ids=ids_all, query_embeds=q_all)
    joint_mask = torch.cat([torch.ones(3 * b, n_q, dtype=mask_all.dtype, device=mask_all.device), mask_all], dim=1)
    out = branch.qformer(query_embeds=joint, query_length=n_q, attention_mask=joint_mask,
                         encoder_hidden_states=feats_all).last_hidden_state
    itm_logits = branch.itm_head(out[:, :n_q]).mean(dim=1)
    itm_labels = torch.cat([torch.ones(b), torch.zeros(2 * b)]).long().to(features.device)
    itm = F.cross_entropy(itm_logits, itm_labels)

    # ITG
    dec_ids = input_ids.clone()
    dec_ids[:, 0] = dec_token_id
    joint = branch.text_embeddings(input_ids=dec_ids, query_embeds=queries)
    mask = additive_mask(itg_allowed(n_q, attention_mask), joint.dtype)
    out = branch.qformer(query_embeds=joint, query_length=n_q, attention_mask=mask,
                         encoder_hidden_states=features).last_hidden_state
    logits = branch.lm_head(out[:, n_q:])
    labels = dec_ids.masked_fill(attention_mask == 0, -100)
    itg = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                          ignore_index=-100, label_smoothing=label_smoothing)
    return {"itc": itc, "itm": itm, "itg": itg, "loss": itc + itm + itg}


class Stage1Model(nn.Module):
    """One branch of an :class:`MSMedCap` with its frozen encoder, as a module ``fit`` can train.

    Only the branch's stage-1 parameters train (everything but ``to_lm``, which belongs to stage 2).
    """

    def __init__(self, model: MSMedCap, name: str):
        super().__init__()
        self.model, self.name = model, name
        self.branch = model.branches[name]

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.branch.named_parameters() if not n.startswith("to_lm.")]

    def features(self, images_uint8) -> torch.Tensor:
        return self.model.encode(images_uint8)[self.name].float()

    def train(self, mode: bool = True):
        super().train(mode)
        self.model.freeze_frozen_parts()
        return self


def make_stage1_collate(qformer_tokenizer, max_length: int = 64):
    """Items of ``captioning_data.CaptionImageCacheDataset`` -> uint8 images + Q-Former token ids."""

    def collate(items: list[dict]) -> dict:
        enc = qformer_tokenizer([it["caption"] for it in items], padding="longest", truncation=True,
                                max_length=max_length, return_tensors="pt", return_token_type_ids=False)
        return {"images": torch.stack([it["image"] for it in items]), "input_ids": enc["input_ids"],
                "attention_mask": enc["attention_mask"]}

    return collate


class Stage1Loss:
    """``loss_fn`` for ``fit`` that also records each objective's value per step (``self.rows``)."""

    def __init__(self, negatives: str = "hard", label_smoothing: float = 0.1, seed: int = 0):
        self.negatives, self.label_smoothing = negatives, label_smoothing
        self.generator = torch.Generator().manual_seed(seed)
        self.rows: list[dict] = []

    def __call__(self, model: Stage1Model, batch) -> torch.Tensor:
        losses = stage1_losses(model.branch, model.features(batch["images"]), batch["input_ids"],
                               batch["attention_mask"], model.model.qformer_tokenizer.bos_token_id,
                               self.negatives, self.label_smoothing, self._generator(batch["images"].device))
        if model.training:
            self.rows.append({k: float(v.detach()) for k, v in losses.items()} | {"step": len(self.rows) + 1})
        return losses["loss"]

    def _generator(self, device):
        return self.generator if device.type == "cpu" else None


@torch.no_grad()
def stage1_eval(model: Stage1Model, loader, negatives: str = "hard", seed: int = 0) -> dict[str, float]:
    """Mean ITC / ITM / ITG losses over a loader (eval mode, fixed negative sampling seed)."""
    was = model.training
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    sums, n = {k: 0.0 for k in (*OBJECTIVES, "loss")}, 0
    for batch in loader:
        losses = stage1_losses(model.branch, model.features(batch["images"]), batch["input_ids"],
                               batch["attention_mask"], model.model.qformer_tokenizer.bos_token_id, negatives,
                               generator=gen)
        k = batch["input_ids"].shape[0]
        for key in sums:
            sums[key] += float(losses[key]) * k
        n += k
    model.train(was)
    return {f"val_{k}": v / max(n, 1) for k, v in sums.items()}
