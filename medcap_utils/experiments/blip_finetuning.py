"""Notebook ``02_blip_finetuning``'s steps (seeds 000, 2Q2T 2024, and 002, UIT-Oggy 2025): the recipes it trains
and where each model goes, the papers' settings against their code, the checks that stop the notebook before a long
run (a batch's tokens and labels, de-normalised pixels, the untrained loss against ln V) and the training curves.

The training itself is :mod:`medcap_utils.training.blip`, the overfit check :mod:`medcap_utils.training.sanity`,
captioning :mod:`medcap_utils.decoding.blip`.
"""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import pandas as pd
import torch
import yaml

from medcap_utils.models.blip import make_blip_loss, pixel_values, set_label_smoothing
from medcap_utils.paths import resolve
from medcap_utils.plotting import fig_width, wrapped_title
from medcap_utils.training.blip import load_blip_recipe
from medcap_utils.training.sanity import require

#: what the recipe table shows of each recipe besides its TrainConfig
RECIPE_KEYS = ("model", "image_size", "max_length", "label_smoothing")
#: the untrained demo model's loss must lie within this fraction of ln(vocabulary size)
INITIAL_LOSS_TOLERANCE = 0.1


def load_recipes(recipe_2q2t: str, models_2q2t, recipe_uit: str, train_uit: bool, profile: str,
                 overrides: dict) -> dict:
    """label -> (recipe, hand-off name); the 2Q2T sections first, UIT-Oggy's BLIP-large last."""
    recipes = {f"2Q2T {key.removeprefix('blip_')}": (load_blip_recipe(recipe_2q2t, key, profile, **overrides),
                                                     f"blip_2q2t_{key.removeprefix('blip_')}")
               for key in models_2q2t}
    if train_uit:
        recipes["UIT-Oggy large"] = (load_blip_recipe(recipe_uit, "blip_large", profile, **overrides),
                                     "blip_uit_oggy_large")
    return recipes


def recipe_table(recipes: dict, hand_off) -> pd.DataFrame:
    """One column per recipe: where its model is saved (repository-relative when inside), its model settings and its
    training configuration."""
    def saved_to(name):
        path = hand_off.model(name)
        return str(path.relative_to(resolve("."))) if path.is_relative_to(resolve(".")) else str(path)

    return pd.DataFrame({label: {"saved to": saved_to(name), **{k: r[k] for k in RECIPE_KEYS}, **r["train"].to_dict()}
                         for label, (r, name) in recipes.items()})


def paper_vs_code(recipe_2q2t: str, recipe_uit: str) -> pd.DataFrame:
    """The ``differences`` each recipe file lists between its paper and the authors' code."""
    return pd.concat([pd.DataFrame(yaml.safe_load(open(resolve(p)))["differences"]).assign(recipe=name)
                      for name, p in [("2Q2T 2024", recipe_2q2t), ("UIT-Oggy 2025", recipe_uit)]])


def check_batch(batch: dict, tok, dec_id: int) -> None:
    """Print two rows of a collated batch as tokens and labels, then require [DEC] first, -100 on the first position
    and on padding, and [SEP] last in every caption."""
    print("input_ids", tuple(batch["input_ids"].shape), "images", tuple(batch["images"].shape), batch["images"].dtype)
    for row in range(2):
        n = int(batch["attention_mask"][row].sum())
        # the hub tokenizers do not know BLIP's [DEC] (its id is only in the model config): name it here
        print([t or "[DEC]" for t in tok.convert_ids_to_tokens(batch["input_ids"][row, :n].tolist())])
        print("labels:", batch["labels"][row].tolist())
    sep_id = tok.sep_token_id
    labels, mask = batch["labels"], batch["attention_mask"].bool()
    ends = mask.sum(1) - 1  # position of each caption's last token
    require((batch["input_ids"][:, 0] == dec_id).all(),
            f"first decoder input is not [DEC] ({dec_id}): {batch['input_ids'][:, 0].tolist()}")
    require((labels[:, 0] == -100).all() and (labels[~mask] == -100).all(),
            "labels are not -100 on the first position and on padding")
    require((batch["input_ids"].gather(1, ends[:, None]).squeeze(1) == sep_id).all(),
            f"a caption does not end with [SEP] ({sep_id})")
    print("check passed: [DEC] first, -100 on padding and the first position, [SEP] last in all", len(labels),
          "captions")


def denormalised_figure(batch: dict, processor, captions):
    """Require that de-normalising the model's pixels gives back the cached uint8 images (within one grey level);
    the first four with their full captions."""
    pv = pixel_values(batch["images"], processor)
    mean = torch.tensor(processor.image_processor.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(processor.image_processor.image_std).view(1, 3, 1, 1)
    restored = ((pv * std + mean) * 255).round().clamp(0, 255).byte().permute(0, 2, 3, 1)
    max_diff = int((restored.int() - batch["images"].int()).abs().max())
    print("max |restored - cached| =", max_diff)
    require(max_diff <= 1,
            f"de-normalising does not give back the cached image: max |restored - cached| = {max_diff} grey levels")
    fig, axes = plt.subplots(1, 4, figsize=(fig_width(11), 3.8), layout="constrained")
    for ax, img, cap in zip(axes, restored, captions):
        ax.imshow(img.numpy())
        wrapped_title(ax, cap, fontsize=7, loc="left")  # the full caption, wrapped
        ax.axis("off")
    return fig


def check_initial_loss(model, processor, batch: dict, recipe: dict, vocabulary: int) -> None:
    """The loss before training without label smoothing, beside ln(V); the demo's untrained model must be within
    :data:`INITIAL_LOSS_TOLERANCE` of it."""
    set_label_smoothing(model, 0.0)
    with torch.no_grad():
        init_loss = make_blip_loss(processor)(model.eval(), batch).item()
    set_label_smoothing(model, recipe["label_smoothing"])
    print(f"initial loss {init_loss:.3f} vs ln(V) = ln({vocabulary}) = {math.log(vocabulary):.3f}")
    if not recipe["model"]:  # the demo's untrained start model
        require(abs(init_loss - math.log(vocabulary)) < INITIAL_LOSS_TOLERANCE * math.log(vocabulary),
                f"untrained initial loss {init_loss:.3f} is not within 10% of ln(V) = {math.log(vocabulary):.3f}")


def training_curves(results: dict):
    """Training and validation loss, validation BLEU-4 and modality mention rate per epoch of every recipe."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    for name, res in results.items():
        h_ = res.history
        axes[0].plot(h_.epoch, h_.train_loss, "o-", label=f"{name} train")
        axes[0].plot(h_.epoch, h_.val_loss, "s--", label=f"{name} valid")
        axes[1].plot(h_.epoch, h_.val_bleu4, "o-", label=name)
        axes[2].plot(h_.epoch, h_.val_modality_rate, "o-", label=name)
    for ax, title in zip(axes, ["loss", "validation BLEU-4", "validation modality mention rate"]):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    return fig
