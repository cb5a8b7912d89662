"""Where the attention-LSTM captioner looks when it names the finding (notebook 07, demo truth only).

The demo generator records each finding's bounding box (``{split}_demo_truth.csv``), so two probes can
be run on teacher-forced reference captions:

* :func:`finding_word_attention` + :func:`grounding_table` -- where the attention goes at the step
  that emits the finding word, against the box (peak-in-box rate and attention mass vs chance);
* :func:`finding_word_counterfactual` -- whether the decoder *reads* the finding word from the box:
  the word's log-likelihood when that one step is made to attend to the box, or to every cell
  alike, or when the image is swapped for another one, next to the model's own attention.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from medcap_utils.analysis.explain import attention_hit_rate, cell_box_overlap
from medcap_utils.data.text_preprocessing import CaptionTextConfig, Vocabulary
from medcap_utils.models.lstm_captioner import LSTMCaptioner, pixels


def finding_boxes(data_dir, split: str) -> dict:
    """``{id: (finding, (x0, y0, x1, y1), location words)}`` for the images of
    ``{split}_demo_truth.csv`` that have a finding with a box (written by the demo generator; absent
    for real ROCOv2). The location words are the truth's side and location ("left", "upper lobe")."""
    path = Path(data_dir) / f"{split}_demo_truth.csv"
    if not path.exists():
        return {}
    truth = pd.read_csv(path, keep_default_na=False)
    cols = ["bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1"]
    truth = truth[(truth["finding"] != "") & (truth["bbox_x0"] != "")]
    return {r.ID: (r.finding, tuple(float(getattr(r, c)) for c in cols), f"{r.side} {r.location}".strip())
            for r in truth.itertuples()}


def _named_findings(vocab: Vocabulary, text: CaptionTextConfig, image_ids: list[str], captions: dict[str, str],
                    boxes: dict):
    """Images whose reference caption contains their finding word (the last word of e.g. "pleural
    effusion", preprocessed like the training text): ``(index, id, box, location words, caption ids,
    position of the finding word in the ids)``."""
    for i, image_id in enumerate(image_ids):
        if image_id not in boxes:
            continue
        finding, box, *where = boxes[image_id]
        word = text.tokens(finding)[-1:] or [""]
        ids = vocab.encode(text.tokens(captions[image_id]), text.max_len)
        if vocab.stoi.get(word[0]) in ids:
            yield i, image_id, box, where[0] if where else "", ids, ids.index(vocab.stoi[word[0]])


PHRASE_WINDOW = 6  # location words count when they follow the finding word within this many tokens


@torch.no_grad()
def finding_word_attention(model: LSTMCaptioner, vocab: Vocabulary, text: CaptionTextConfig,
                           images_uint8: np.ndarray, image_ids: list[str], captions: dict[str, str],
                           boxes: dict) -> dict:
    """Teacher-forced attention where the reference caption names the finding (notebook 07).

    Feeding the reference caption (as "attention correctness" studies do) asks: when the model is
    about to say "nodule", where does it look? Only images whose reference caption contains the
    finding word (last word of e.g. "pleural effusion", preprocessed like the training text) count.
    Returns ``maps`` (per image every step's attention, (T, h, w)), ``boxes``, ``ids`` and ``steps``
    with two step choices for :func:`medcap_utils.analysis.explain.attention_hit_rate`:

    * ``"finding word"`` -- the step that emits the finding word (the primary measure);
    * ``"finding + location"`` -- that step and the steps emitting the side/location words that
      follow within ``PHRASE_WINDOW`` tokens ("mass in the *left* *lung*"): words whose pixels are
      the finding's position, so a model can only get them right by knowing where the finding is.
    """
    model.eval()
    device = next(model.parameters()).device
    maps, kept_boxes, kept, word_steps, phrase_steps = [], [], [], [], []
    for i, image_id, box, where, ids, pos in _named_findings(vocab, text, image_ids, captions, boxes):
        location = {vocab.stoi[w] for w in text.tokens(where) if w in vocab.stoi}
        follow = [p for p in range(pos + 1, min(pos + 1 + PHRASE_WINDOW, len(ids))) if ids[p] in location]
        out = model(pixels(torch.from_numpy(np.array(images_uint8[i:i + 1])).to(device)),
                    torch.tensor([ids], device=device))
        # Step t reads token t and emits token t + 1: token p is emitted at step p - 1.
        maps.append(out["alphas"][0].reshape(-1, *out["grid"]).cpu().numpy())
        word_steps.append([pos - 1])
        phrase_steps.append([pos - 1] + [p - 1 for p in follow])
        kept_boxes.append(box)
        kept.append(image_id)
    return {"maps": maps, "boxes": kept_boxes, "ids": kept,
            "steps": {"finding word": word_steps, "finding + location": phrase_steps}}


def grounding_table(found: dict):
    """One row per step choice of :func:`finding_word_attention`: hit rate and attention mass in the
    finding's box beside their chance levels, and the ratios (notebook 07)."""
    rows = []
    for name, steps in found["steps"].items():
        res = attention_hit_rate(found["maps"], found["boxes"], steps=steps)
        rows.append({"steps": name, **res, "hit / chance": res["hit_rate"] / max(res["chance_peak"], 1e-12),
                     "mass / area": res["attention_mass"] / max(res["chance_area"], 1e-12)})
    return pd.DataFrame(rows).set_index("steps")


COUNTERFACTUALS = ("own attention", "attention on the box", "uniform attention", "another image")


@torch.no_grad()
def finding_word_counterfactual(model: LSTMCaptioner, vocab: Vocabulary, text: CaptionTextConfig,
                                images_uint8: np.ndarray, image_ids: list[str], captions: dict[str, str],
                                boxes: dict) -> pd.DataFrame:
    """Does the decoder read the finding word from the finding's pixels? (notebook 07)

    For each image whose reference names its finding (as in :func:`finding_word_attention`), the
    reference is teacher-forced and the finding word's negative log-likelihood and top-1 hit are
    taken four ways, changing only the step that emits the word:

    * ``own attention`` -- the model as it is;
    * ``attention on the box`` -- that step's weights replaced by the box's cells (weighted by how
      much of each cell the box covers), so the context is the finding's own features;
    * ``uniform attention`` -- every cell alike: the context is the plain average of the grid;
    * ``another image`` -- the model's own attention, but every step sees the next image of the list
      (a cyclic shift): how much of the word comes from the image at all.

    A decoder that names the finding from the box gets the word at least as well when made to look at
    the box as with the plain average; one that does not read it there gets it worse. Returns one row
    per image and way: ``id``, ``probe``, ``nll``, ``top1``.
    """
    model.eval()
    device = next(model.parameters()).device
    rows = []
    n = len(image_ids)
    for i, image_id, box, _, ids, pos in _named_findings(vocab, text, image_ids, captions, boxes):
        step = pos - 1  # step t emits token t + 1
        x = pixels(torch.from_numpy(np.array(images_uint8[i:i + 1])).to(device))
        other = pixels(torch.from_numpy(np.array(images_uint8[(i + 1) % n:(i + 1) % n + 1])).to(device))
        tokens = torch.tensor([ids], device=device)
        own = model(x, tokens)
        on_box = torch.as_tensor(cell_box_overlap(own["grid"], box), dtype=torch.float32, device=device).flatten()
        forced = torch.stack([on_box / on_box.sum(), torch.full_like(on_box, 1.0 / on_box.numel())])
        # the two forced-attention runs share one batch: rows = box, uniform
        both = model(x.expand(2, -1, -1, -1), tokens.expand(2, -1), attention_override={step: forced})["logits"]
        logits = {"own attention": own["logits"][0, step], "attention on the box": both[0, step],
                  "uniform attention": both[1, step], "another image": model(other, tokens)["logits"][0, step]}
        for probe in COUNTERFACTUALS:
            logp = logits[probe].log_softmax(-1)
            rows.append({"id": image_id, "probe": probe, "nll": -float(logp[ids[pos]]),
                         "top1": bool(int(logp.argmax()) == ids[pos])})
    return pd.DataFrame(rows, columns=["id", "probe", "nll", "top1"])


def counterfactual_summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean NLL and top-1 rate per probe of :func:`finding_word_counterfactual`, in its order (notebook 07)."""
    return rows.groupby("probe")[["nll", "top1"]].mean().reindex(list(COUNTERFACTUALS))
