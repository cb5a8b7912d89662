"""Notebook ``06_msmedcap``'s steps around the MSMedCap model: recipe reading, the demo LM's text pre-training,
stage 1 and stage 2 through ``training.fit``, captioning a split, and the paper's Table 1 (our scores,
from :func:`medcap_utils.evaluation.scores.score_dataset`, put on its scales by :func:`scaled_like_paper`).

Model code is in ``medcap_utils.models.msmedcap``, the stage-1 objectives in
``medcap_utils.training.msmedcap_pretrain``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from medcap_utils.decoding.caption import caption
from medcap_utils.decoding.config import DecodingConfig
from medcap_utils.training import TrainConfig, fit
from medcap_utils.training.msmedcap_pretrain import Stage1Loss, Stage1Model, make_stage1_collate, stage1_eval

# Seed 003 Table 1, transcribed exactly (scaled as printed: BLEU/METEOR/CIDEr x10^3, ROUGE-L/BERTScore x10^2,
# BLEURT x10^1). Data: training on COCO (G) and ROCO + MedICaT (M); test 8,000 ROCO + 50,000 MedICaT images.
PAPER_TABLE1 = pd.DataFrame(
    [("BLIP2 (G)", 7.4, 3.0, 1.2, 26.1, 9.7, 23.7, 72.3, -11.5),
     ("BLIP2 (G+M)", 53.2, 20.6, 7.5, 28.3, 11.1, 16.4, 71.6, -11.5),
     ("SAM-BLIP2 (G+M)", 83.4, 29.4, 10.0, 35.5, 9.3, 11.1, 72.7, -9.3),
     ("MSMedCap (G, G)", 101.6, 45.4, 22.2, 59.1, 15.1, 56.9, 76.6, -7.7),
     ("MSMedCap (G+M, G)", 107.2, 45.8, 22.3, 53.0, 14.3, 36.6, 75.9, -7.8),
     ("MSMedCap (G+M, G+M)", 48.1, 22.8, 10.9, 49.4, 14.7, 61.0, 76.6, -9.1),
     ("MSMedCap (G, G+M)", 108.9, 48.1, 23.1, 62.6, 15.4, 57.5, 76.8, -7.6)],
    columns=["model", "Bleu_1 x1e3", "Bleu_2 x1e3", "Bleu_3 x1e3", "METEOR x1e3", "ROUGE_L x1e2", "CIDEr x1e3",
             "BERTScore x1e2", "BLEURT x1e1"])
SCALES = {"Bleu_1": 1e3, "Bleu_2": 1e3, "Bleu_3": 1e3, "METEOR": 1e3, "ROUGE_L": 1e2, "CIDEr": 1e3}


def load_recipe(path, section: str) -> dict:
    """The MSMedCap recipe for ``section``: ``paper``, ``authors_code`` (merged over paper) or ``demo`` (merged
    over paper), read by :func:`medcap_utils.training.recipe.read_recipe`. Sections are dicts of the keys given;
    stage ``train`` mappings also carry ``recipe_hash`` (``TrainConfig(**cfg["stage1"]["train"])`` keeps it)."""
    from medcap_utils.training.recipe import RecipeError, read_recipe
    from medcap_utils.training.recipe_schema import MsmedcapRecipe

    if section not in ("paper", "authors_code", "demo"):
        raise RecipeError(f"{path}: section: expected 'paper', 'authors_code' or 'demo', found {section!r}")
    recipe = read_recipe(path, MsmedcapRecipe, profile="demo" if section == "demo" else "rocov2",
                         variant="authors_code" if section == "authors_code" else None, train_as="mapping")
    return recipe


def stage_config(train: dict, epochs: int = 0, batch_size: int = 0, seed: int | None = None) -> TrainConfig:
    """A stage's ``TrainConfig`` from its recipe ``train`` mapping; a notebook parameter overrides a value only when
    it is set (epochs / batch size 0 keep the recipe's), so the recipe section is what runs unless a profile says
    otherwise (issue 17: parameters must not silently override the recipe)."""
    overrides = {k: v for k, v in {"epochs": epochs, "batch_size": batch_size}.items() if v}
    if seed is not None:
        overrides["seed"] = seed
    return TrainConfig(**train).replace(**overrides)


def pretrain_demo_lm(lm_dir, tokenizer, captions, cfg: TrainConfig, max_length: int = 64) -> pd.DataFrame:
    """Demo only: teach the tiny random OPT the demo caption language from text alone, then save it
    back to ``lm_dir``. The real OPT-2.7b arrives pre-trained on text; a frozen random LM could not be
    steered into captions by the queries at all, which would make the demo meaningless."""
    from medcap_utils.models.msmedcap_parts import load_language_model

    lm = load_language_model(lm_dir)
    texts = [c + tokenizer.eos_token for c in captions]

    def collate(batch):
        enc = tokenizer(batch, padding="longest", truncation=True, max_length=max_length, return_tensors="pt")
        enc["labels"] = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        return dict(enc)

    result = fit(lm, texts, cfg, lambda m, b: m(**b).loss, collate_fn=collate)
    lm.save_pretrained(lm_dir)
    return result.history


def run_stage1(model, name: str, train_ds, cfg: TrainConfig, valid_ds=None, negatives: str = "hard"):
    """Stage 1 for one branch: ``(per-epoch history with val_itc/val_itm/val_itg, per-step objective table)``."""
    from torch.utils.data import DataLoader

    stage1 = Stage1Model(model, name)
    collate = make_stage1_collate(model.qformer_tokenizer, model.settings["max_text_tokens"])
    loss = Stage1Loss(negatives, seed=cfg.seed)
    evaluate = None
    if valid_ds is not None:
        loader = DataLoader(valid_ds, batch_size=cfg.batch_size, collate_fn=collate)
        evaluate = lambda m, epoch: stage1_eval(m, loader, negatives)  # noqa: E731
    result = fit(stage1, train_ds, cfg, loss, collate_fn=collate, evaluate_fn=evaluate,
                 trainable_params=stage1.trainable_parameters())
    steps = pd.DataFrame(loss.rows)
    steps.insert(0, "branch", name)
    history = result.history.assign(branch=name)
    return history, steps


def make_stage2_collate(model):
    """Items of ``CaptionImageCacheDataset`` -> uint8 images + LM ids/labels (prompt, bos, padding -100)."""

    def collate(items):
        batch = model.caption_batch([it["caption"] for it in items])
        batch["images"] = torch.stack([it["image"] for it in items])
        return batch

    return collate


def stage2_loss(model, batch) -> torch.Tensor:
    """The LM's caption loss (``loss_fn`` for ``fit``)."""
    return model(batch["images"], batch["input_ids"], batch["attention_mask"], batch["labels"]).loss


def run_stage2(model, train_ds, cfg: TrainConfig, valid_ds=None, evaluate_fn=None):
    """Stage 2 (Sec. 2.3): only queries, Q-Formers and projections train, through ``fit``."""
    return fit(model, train_ds, cfg, stage2_loss, collate_fn=make_stage2_collate(model), valid_dataset=valid_ds,
               evaluate_fn=evaluate_fn, trainable_params=model.trainable_parameters())


def copy_branches(source, target) -> None:
    """Give ``target`` the (stage-1 pre-trained) branches of ``source`` that it uses."""
    for name in target.branches:
        target.branches[name].load_state_dict(source.branches[name].state_dict())


def caption_dataset_images(model, dataset, config: DecodingConfig | dict | None = None,
                           batch_size: int = 32) -> dict[str, str]:
    """``{id: caption}`` for every item of a ``CaptionImageCacheDataset``, decoded as ``config`` says (a
    :class:`DecodingConfig` or the recipe's ``decoding:`` mapping) through
    :func:`medcap_utils.decoding.caption.caption` (the ``generate`` engine)."""
    return dict(zip(dataset.ids, caption(model, dataset.images(), config, batch_size=batch_size)))


def scaled_like_paper(scores: dict[str, float]) -> dict[str, float]:
    """Our COCO scores on Table 1's scales (for the side-by-side table)."""
    return {f"{k} x1e{int(np.log10(s))}": scores[k] * s for k, s in SCALES.items() if k in scores}
