"""The demo's ImageNet stand-in (issue 17): ``resnet-classifier-general``, built by ``medcap standins`` (notebook 00).

ResNet-50 and ResNet-101 reach seeds 004 and 002 pretrained as ImageNet classifiers; the demo's stand-in is a small
``ResNetForImageClassification`` trained the same way, supervised classification of general images, on the general
synthetic domain (:mod:`medcap_utils.data.synth_general`). Its classes are what a scene holds, wherever it is: each
shape kind, each colour, each coloured kind ("red circle"), each size and the background. A scene holds several,
so the head is multi-label (``problem_type="multi_label_classification"``: BCE), as ImageNet-21k's tags are; the
classes say nothing of position, so the features it learns are about what is seen, as ImageNet's are.

Saved with ``save_pretrained`` like ``microsoft/resnet-50`` (a classifier checkpoint whose trunk
``ResNetModel.from_pretrained`` reads), with the images normalised by ImageNet's mean and std
(:func:`medcap_utils.models.lstm_captioner.pixels`), so a recipe starts from the folder exactly as from the hub id.
Cached in the same way as the BLIP stand-in (:mod:`medcap_utils.training.standins`).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from medcap_utils.data.synth_general import BACKGROUNDS, COLOURS, SHAPES, SIZES

ROLE = "resnet-classifier-general"


def class_names() -> list[str]:
    """Every class of the stand-in's head, in a fixed order (the saved ``id2label``)."""
    return ([*SHAPES, *COLOURS, *(f"{c} {k}" for c in COLOURS for k in SHAPES), *(f"{s} shape" for s in SIZES),
             *(f"{b} background" for b in BACKGROUNDS)])


def scene_classes(shapes: str, background: str) -> set[str]:
    """The classes one scene holds, from its row of ``{split}_general_truth.csv`` (``size:colour:kind:rc;...``)."""
    found = {f"{background} background"}
    for item in shapes.split(";"):
        size, colour, kind, _cell = item.split(":")
        found |= {kind, colour, f"{colour} {kind}", f"{size} shape"}
    return found


def label_matrix(data_dir: Path, split: str, ids: list[str]) -> np.ndarray:
    """``(len(ids), classes)`` float32 multi-hot targets of ``split``, rows in the order of ``ids``."""
    truth = pd.read_csv(data_dir / f"{split}_general_truth.csv", dtype=str, keep_default_na=False).set_index("ID")
    index = {name: i for i, name in enumerate(class_names())}
    out = np.zeros((len(ids), len(index)), dtype=np.float32)
    for row, image_id in enumerate(ids):
        for name in scene_classes(truth.at[image_id, "shapes"], truth.at[image_id, "background"]):
            out[row, index[name]] = 1.0
    return out


class SceneClasses(torch.utils.data.Dataset):
    """(uint8 image, multi-hot classes) for every image of one general split, from the project's image cache."""

    def __init__(self, data_dir: Path, split: str, image_size: int):
        from medcap_utils.data.cache import get_image_cache

        self.cache = get_image_cache(data_dir, split, image_size)
        self.labels = torch.from_numpy(label_matrix(data_dir, split, self.cache.ids))

    def __len__(self) -> int:
        return len(self.cache)

    def __getitem__(self, i: int) -> dict:
        return {"image": torch.from_numpy(np.array(self.cache.images[i])), "labels": self.labels[i]}


def loss_fn(model, batch: dict) -> torch.Tensor:
    """``fit``'s loss: the classifier's own BCE over the multi-hot classes."""
    from medcap_utils.models.lstm_captioner import pixels

    return model(pixel_values=pixels(batch["image"]), labels=batch["labels"]).loss


def micro_f1(predicted: torch.Tensor, truth: torch.Tensor) -> float:
    tp = (predicted & truth).sum().item()
    return 2 * tp / max(1, predicted.sum().item() + truth.sum().item())


@torch.no_grad()
def evaluate_classifier(model, valid: SceneClasses, prior: torch.Tensor, batch_size: int = 128) -> dict:
    """The stand-in's own quality on the general valid split: micro-F1 at 0.5, exact class sets, and the share of
    images whose every shape kind is found (kinds present exactly); beside them the two floors an image-blind
    classifier reaches: every class present, and the classes present in most training scenes (``prior``: the
    training prevalence of each class)."""
    from medcap_utils.models.lstm_captioner import pixels

    model.eval()
    scores = []
    for start in range(0, len(valid), batch_size):
        images = torch.from_numpy(np.array(valid.cache.images[start:start + batch_size]))
        scores.append(torch.sigmoid(model(pixel_values=pixels(images)).logits))
    predicted, truth = torch.cat(scores) >= 0.5, valid.labels.bool()
    kinds = slice(0, len(SHAPES))
    return {"valid_images": len(valid), "valid_micro_f1": round(micro_f1(predicted, truth), 4),
            "valid_prior_micro_f1": round(micro_f1((prior >= 0.5).expand_as(truth), truth), 4),
            "valid_exact_sets": round((predicted == truth).all(1).float().mean().item(), 4),
            "valid_kinds_exact": round((predicted[:, kinds] == truth[:, kinds]).all(1).float().mean().item(), 4),
            "valid_chance_micro_f1": round(2 * truth.float().mean().item() / (1 + truth.float().mean().item()), 4)}


def build_resnet_standin(recipe: dict, retrain: bool = False) -> dict:
    """Pretrain the ResNet classifier stand-in of ``recipe`` (or reuse it); returns its ``standin.json`` record."""
    from transformers import ResNetForImageClassification

    from medcap_utils.atomic import atomic_directory
    from medcap_utils.models.lstm_captioner import small_resnet_config
    from medcap_utils.training import fit
    from medcap_utils.training.standins import finish, prepare

    out, data, key, reused = prepare(recipe, retrain)
    if reused is not None:
        return reused
    start = time.perf_counter()
    names = class_names()
    config = small_resnet_config(recipe["width"], tuple(recipe["depths"]))
    config.num_labels = len(names)
    config.id2label = dict(enumerate(names))
    config.label2id = {n: i for i, n in enumerate(names)}
    config.problem_type = "multi_label_classification"
    torch.manual_seed(recipe["train"].seed)  # the initial weights follow the recipe, not the process's history
    model = ResNetForImageClassification(config)
    train = SceneClasses(data, "train", recipe["image_size"])
    valid = SceneClasses(data, "valid", recipe["image_size"])
    with atomic_directory(out) as tmp:
        result = fit(model, train, recipe["train"].replace(output_dir=None), loss_fn)
        quality = evaluate_classifier(model, valid, prior=train.labels.mean(0))
        model.save_pretrained(tmp)
        return finish(tmp, ROLE, recipe, key, result, start, classes=len(names),
                      parameters=sum(p.numel() for p in model.parameters()), train_images=len(train), **quality)


def summary_line(info: dict) -> str:
    return (f"{ROLE}: {info['recipe']['out']} | pretrained {info['steps']} steps in {info['train_time_s']} s "
            f"| loss {info['first_epoch_loss']:.3f} -> {info['last_epoch_loss']:.3f} | general valid: micro-F1 "
            f"{info['valid_micro_f1']} (all-positive {info['valid_chance_micro_f1']}, training prior "
            f"{info['valid_prior_micro_f1']}), exact class sets "
            f"{info['valid_exact_sets']}, shape kinds exact {info['valid_kinds_exact']} "
            f"/ {info['valid_images']} images")
