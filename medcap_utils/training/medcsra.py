"""Multi-label concept detection data, training and thresholding for MedCSRA (seed 002, section 5.2).

Used by notebook ``05_concept_detection_medcsra``. The pieces, in the order the notebook uses them:
class set from training CUIs (:func:`build_class_set`), multi-hot targets over the decode-once image
cache (:class:`ConceptImages`), BCE training through the shared :func:`medcap_utils.training.fit`
(:func:`train_medcsra`), per-class probabilities (:func:`predict_probs`), the validation threshold
sweep (:func:`threshold_curve`, :func:`best_threshold`). Scores come from :mod:`medcap_utils.metrics.concepts`.
"""
from __future__ import annotations

import copy
import json
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from medcap_utils.data.batch_augment import AugmentConfig, augment_batch, resize_batch
from medcap_utils.data.cache import get_image_cache, normalize_uint8
from medcap_utils.data.rocov2 import split_frame
from medcap_utils.metrics.concepts import f1_primary, micro_macro_f1
from medcap_utils.models.medcsra import MedCSRA, build_medcsra, demo_resnet_config
from medcap_utils.paths import resolve
from medcap_utils.training import TrainConfig, fit

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Seed 002 sweeps 0.05 .. 0.55 (the authors' code: ``np.arange(0.05, 0.6, 0.05)``, 11 values).
THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 12))


# ----------------------------------------------------------------------------------- class set
@dataclass
class ClassSet:
    """The CUIs the detector predicts: training CUIs seen at least ``min_count`` times."""
    cuis: list[str]
    counts: list[int]
    min_count: int
    n_train_cuis: int  # distinct CUIs in the training split, before the cut

    def __len__(self) -> int:
        return len(self.cuis)

    def summary(self) -> str:
        return (f"{len(self.cuis)} classes = training CUIs with >= {self.min_count} images "
                f"(of {self.n_train_cuis} distinct training CUIs)")


def build_class_set(train_cuis: list[list[str]], min_count: int = 1) -> ClassSet:
    """Class set from the training split's CUI lists, most frequent first (ties by CUI)."""
    counts = Counter(c.upper() for cuis in train_cuis for c in set(cuis))
    kept = sorted((c for c, n in counts.items() if n >= min_count), key=lambda c: (-counts[c], c))
    return ClassSet(kept, [counts[c] for c in kept], min_count, len(counts))


def multi_hot(cuis_lists: list[list[str]], classes: list[str]) -> np.ndarray:
    """(N, K) float32 targets; CUIs outside the class set are dropped (they still count as misses
    in the official F1, which always scores against the full ground truth)."""
    column = {c: k for k, c in enumerate(classes)}
    out = np.zeros((len(cuis_lists), len(classes)), dtype=np.float32)
    for row, cuis in enumerate(cuis_lists):
        for c in cuis:
            k = column.get(c.upper())
            if k is not None:
                out[row, k] = 1.0
    return out


# ------------------------------------------------------------------------------------- dataset
class ConceptImages(Dataset):
    """Cached uint8 images of one split with their multi-hot targets (``pixels``, ``labels``)."""

    def __init__(self, root, split: str, classes: list[str], cache_size: int):
        self.frame = split_frame(root, split)
        self.cache = get_image_cache(root, split, cache_size)
        self.ids: list[str] = self.frame["id"].tolist()
        self.rows = np.array([self.cache.index[i] for i in self.ids])
        self.targets = torch.from_numpy(multi_hot(self.frame["cuis"].tolist(), classes))

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        return {"pixels": torch.from_numpy(np.array(self.cache.images[self.rows[i]])), "labels": self.targets[i]}

    def ground_truth(self, column: str = "cuis") -> dict[str, list[str]]:
        return dict(zip(self.ids, self.frame[column]))


@dataclass
class PixelRecipe:
    """How cached uint8 pixels become model input (augmentation only while training)."""
    image_size: int = 224
    normalize: bool = True  # ImageNet mean/std; the authors' code feeds [0, 1] pixels
    augment: AugmentConfig | None = None

    def __call__(self, pixels: torch.Tensor, train: bool, generator: torch.Generator | None = None):
        x = normalize_uint8(pixels, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))  # (B, 3, H, W) in [0, 1]
        if train and self.augment is not None:
            x = augment_batch(x, self.augment, generator)
        else:
            x = resize_batch(x, self.image_size)
        if self.normalize:
            mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
            std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
            x = (x - mean) / std
        return x


def bce_loss_fn(recipe: PixelRecipe):
    """``loss_fn(model, batch)`` for :func:`fit`: BCE with logits averaged over classes and images
    (seed 002, eq. 1, sums over classes; the mean only rescales the learning rate, as in the code)."""
    def loss_fn(model: MedCSRA, batch: dict) -> torch.Tensor:
        logits = model(recipe(batch["pixels"], train=model.training)).logits
        return torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), batch["labels"])
    return loss_fn


@torch.no_grad()
def predict_probs(model: MedCSRA, dataset: ConceptImages, recipe: PixelRecipe, batch_size: int = 32) -> np.ndarray:
    """(N, K) sigmoid probabilities in dataset order."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        out.append(torch.sigmoid(model(recipe(batch["pixels"].to(device), train=False)).logits).float().cpu())
    model.train(was_training)
    return torch.cat(out).numpy()


# ---------------------------------------------------------------------------------- thresholds
def probs_to_concepts(probs: np.ndarray, ids: list[str], classes: list[str], threshold: float) -> dict[str, list[str]]:
    """{id: [CUI, ...]} with every class whose probability exceeds ``threshold`` (strictly, as the
    authors' code), most probable first, at most 100 (the ImageCLEF run-file limit)."""
    preds = {}
    for image_id, p in zip(ids, probs):
        order = np.argsort(-p, kind="stable")
        preds[image_id] = [classes[k] for k in order[:100] if p[k] > threshold]
    return preds


def threshold_curve(probs: np.ndarray, ids: list[str], classes: list[str], gt: dict[str, list[str]],
                    thresholds=THRESHOLDS) -> pd.DataFrame:
    """Per threshold: the official per-image F1 (ImageCLEF primary) and micro-F1 (authors' code)."""
    rows = []
    for t in thresholds:
        pred = probs_to_concepts(probs, ids, classes, t)
        rows.append({"threshold": float(t), "f1_per_image": f1_primary(gt, pred),
                     "f1_micro": micro_macro_f1(gt, pred)["f1_micro"]})
    return pd.DataFrame(rows)


def best_threshold(curve: pd.DataFrame, column: str = "f1_per_image") -> float:
    """The threshold at the curve's maximum (the first, i.e. lowest, on ties)."""
    return float(curve["threshold"].iloc[int(np.argmax(curve[column].to_numpy()))])


# -------------------------------------------------------------------------------------- recipe
def pixel_recipe(data: dict) -> PixelRecipe:
    aug = data.get("augment")
    return PixelRecipe(image_size=int(data["image_size"]), normalize=bool(data.get("normalize", True)),
                       augment=AugmentConfig(out_size=int(data["image_size"]), **aug) if aug else None)


def build_model(model: dict, classes: list[str]) -> MedCSRA:
    """``model.backbone`` is a hub id or a directory; ``"demo"`` builds the tiny random ResNet."""
    backbone = demo_resnet_config(int(model.get("width", 16))) if model["backbone"] == "demo" else model["backbone"]
    return build_medcsra(backbone, len(classes), head=model.get("head", "medcsra"), lam=float(model.get("lam", 0.1)),
                         temperature=float(model.get("temperature", 1.0)), classes=list(classes),
                         branches=model.get("branches") or "both")


@dataclass
class DetectorRun:
    """What :func:`train_medcsra` returns to notebook 05."""
    model: MedCSRA
    classes: ClassSet
    recipe: PixelRecipe
    train: ConceptImages
    valid: ConceptImages
    history: pd.DataFrame
    best: dict = field(default_factory=dict)
    wall_time_s: float = 0.0


def train_medcsra(data_dir: str | Path, recipe: dict, output_dir: str | Path | None = None, retrain: bool = False,
                  **train_overrides) -> DetectorRun:
    """Train MedCSRA with BCE, validating each epoch by the best per-image F1 over the threshold sweep
    (the early-stopping monitor ``val_f1``; the authors' code monitors the best micro-F1 the same way).

    With ``output_dir`` the finished detector is saved to ``output_dir/final`` with the settings it was trained
    with, and a later call loads it when the repository's one load-or-train rule
    (:func:`medcap_utils.training.reuse.should_reuse`) says so; more epochs train on from the trainer's
    per-epoch checkpoints. The best epoch's weights are restored.
    """
    root = resolve(data_dir)
    data = recipe["data"]
    train_frame = split_frame(root, "train")
    classes = build_class_set(train_frame["cuis"].tolist(), int(data.get("min_count", 1)))
    cache_size = int(data.get("cache_size", data["image_size"]))
    train_set = ConceptImages(root, "train", classes.cuis, cache_size)
    valid_set = ConceptImages(root, "valid", classes.cuis, cache_size)
    pixels = pixel_recipe(data)
    cfg = TrainConfig.from_dict(dict(recipe["train"]),
                                output_dir=None if output_dir is None else str(resolve(output_dir)),
                                **train_overrides)
    final = None if output_dir is None else resolve(output_dir) / "final"
    settings = {"recipe": recipe, "train": cfg.to_dict()}
    if final is not None:
        saved = _saved_run(final, root, settings, retrain)
        if saved is not None:
            model, history, best, seconds = saved
            return DetectorRun(model, classes, pixels, train_set, valid_set, history, best, seconds)
        if retrain and resolve(output_dir).exists():  # from scratch: the trainer would resume its checkpoints
            shutil.rmtree(resolve(output_dir))
    # the initial weights come from the recipe's seed, not from whatever the process drew before (two runs of
    # notebook 05 started from different random ResNets and ended with different F1s: issue 14)
    torch.manual_seed(cfg.seed)
    model = build_model(recipe["model"], classes.cuis)
    gt_valid = valid_set.ground_truth()
    best_state: dict = {}

    def evaluate(m: MedCSRA, epoch: int) -> dict:
        curve = threshold_curve(predict_probs(m, valid_set, pixels), valid_set.ids, classes.cuis, gt_valid)
        f1 = float(curve["f1_per_image"].max())
        if f1 > best_state.get("f1", -1.0):  # kept in memory too, so runs without output_dir restore it
            best_state.update(f1=f1, weights=copy.deepcopy(m.state_dict()))
        return {"val_f1": f1, "val_f1_micro": float(curve["f1_micro"].max()), "val_threshold": best_threshold(curve)}

    result = fit(model, train_set, cfg, bce_loss_fn(pixels), valid_dataset=valid_set, evaluate_fn=evaluate,
                 trainable_params=[p for p in model.parameters() if p.requires_grad])
    if "weights" in best_state:
        model.load_state_dict(best_state["weights"])
    elif result.best_dir is not None and (result.best_dir / "medcsra.json").exists():  # resumed, finished run
        model = MedCSRA.from_pretrained(result.best_dir)
    if final is not None:
        _save_run(final, model, root, settings, result)
    return DetectorRun(model, classes, pixels, train_set, valid_set, result.history, result.best, result.wall_time_s)


def _saved_run(final: Path, root: Path, settings: dict, retrain: bool):
    """``(model, history, best, seconds)`` from ``final`` when :func:`should_reuse` allows it, else None."""
    from medcap_utils.training.reuse import Stale, should_reuse

    info: dict = {}

    def recorded() -> dict:
        info.update(json.loads((final / "run.json").read_text()))
        if info.get("data_dir") != str(root):
            raise Stale(f"trained on {info.get('data_dir')}, not on {root}")
        return info["settings"]

    if not should_reuse(final, settings, recorded, retrain, "MedCSRA detector"):
        return None
    return (MedCSRA.from_pretrained(final / "model"), pd.DataFrame(info["history"]), info["best"],
            info["wall_time_s"])


def _save_run(final: Path, model: MedCSRA, root: Path, settings: dict, result) -> None:
    """The detector, the settings and data it was trained with, and its history; checksums last."""
    from medcap_utils.atomic import atomic_directory
    from medcap_utils.model_files import write_checksums

    with atomic_directory(final) as tmp:
        model.save_pretrained(tmp / "model")
        run = {"data_dir": str(root), "settings": settings, "history": result.history.to_dict(orient="list"),
               "best": result.best, "wall_time_s": result.wall_time_s}
        (tmp / "run.json").write_text(json.dumps(run, indent=1, default=str))
        write_checksums(tmp)
