"""Data, training and decoding glue around :mod:`medcap_utils.models.lstm_captioner`.

Used by notebook ``07_explainable_lstm_captioner`` (and its tests). Images come from the uint8 image
cache (:func:`medcap_utils.data.cache.get_image_cache`) and are augmented as uint8 in the collate
function, then normalised on the device inside the loss; training runs through the shared
:func:`medcap_utils.training.fit`.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import Dataset

# The grounding probes live in their own module; notebook 07 and the tests reach them through here.
from medcap_utils.analysis.lstm_grounding import (  # noqa: F401
    COUNTERFACTUALS,
    PHRASE_WINDOW,
    counterfactual_summary,
    finding_boxes,
    finding_word_attention,
    finding_word_counterfactual,
    grounding_table,
)
from medcap_utils.data.augment import FlipCropConfig, random_flip_crop
from medcap_utils.data.cache import get_image_cache
from medcap_utils.data.rocov2 import split_frame
from medcap_utils.data.text_preprocessing import CaptionTextConfig, Vocabulary, imageclef_bleu  # noqa: F401 (notebook 07)
from medcap_utils.decoding.config import DecodingConfig, as_config
from medcap_utils.decoding.lstm import lstm_search
from medcap_utils.models.lstm_captioner import LSTMCaptioner, LSTMCaptionerConfig, load_visual_encoder, pixels  # noqa: F401 (pixels: notebook 07)


def label_space(frame, vocab: Vocabulary, text: CaptionTextConfig, kind: str = "concepts",
                min_count: int = 1) -> list[str]:
    """Classes of the semantic encoder's multi-label head, from the training split (notebook 07).

    ``kind="concepts"``: CUIs seen at least ``min_count`` times (ROCOv2's CUIs were extracted from
    the captions, so caption -> CUIs is a real text classification). ``kind="words"``: the caption's
    own vocabulary words (the other reading of "multi-label classifier over caption words")."""
    if kind == "concepts":
        counts = Counter(c for cuis in frame["cuis"] for c in cuis)
    elif kind == "words":
        counts = Counter(t for cap in frame["caption"] for t in set(text.tokens(cap)) if t in vocab.stoi)
    else:
        raise ValueError(f"label kind {kind!r}; expected 'concepts' or 'words'")
    return sorted(k for k, n in counts.items() if n >= min_count)


class CaptionImageDataset(Dataset):
    """(uint8 image, caption ids, multi-hot labels) per image of one split (notebook 07)."""

    def __init__(self, root, split: str, image_size: int, vocab: Vocabulary, text: CaptionTextConfig,
                 labels: list[str], label_kind: str = "concepts", frame=None):
        self.frame = split_frame(root, split) if frame is None else frame
        self.cache = get_image_cache(root, split, image_size)
        self.rows = [self.cache.index[i] for i in self.frame["id"]]
        self.ids = [torch.tensor(vocab.encode(text.tokens(c), text.max_len)) for c in self.frame["caption"]]
        index = {label: j for j, label in enumerate(labels)}
        self.labels = torch.zeros(len(self.frame), len(labels))
        for i, (cap, cuis) in enumerate(zip(self.frame["caption"], self.frame["cuis"])):
            items = cuis if label_kind == "concepts" else text.tokens(cap)
            for item in items:
                if item in index:
                    self.labels[i, index[item]] = 1.0

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return {"image": torch.from_numpy(np.array(self.cache.images[self.rows[i]])),
                "input_ids": self.ids[i], "labels": self.labels[i]}


def make_collate(pad_id: int, augment: FlipCropConfig | None = None):
    """Stack images (augmented as uint8 when ``augment`` is given) and pad caption ids."""
    def collate(items: list[dict]) -> dict:
        images = torch.stack([it["image"] for it in items])
        if augment is not None:
            images = random_flip_crop(images, augment)
        return {"image": images,
                "input_ids": pad_sequence([it["input_ids"] for it in items], batch_first=True,
                                          padding_value=pad_id),
                "labels": torch.stack([it["labels"] for it in items])}
    return collate


def make_loss_fn(alpha_c: float = 1.0, semantic_weight: float = 1.0):
    """``loss_fn(model, batch)`` for :func:`medcap_utils.training.fit`."""
    def loss_fn(model: LSTMCaptioner, batch: dict) -> torch.Tensor:
        return model.loss(pixels(batch["image"]), batch["input_ids"], batch["labels"],
                          alpha_c=alpha_c, semantic_weight=semantic_weight)["loss"]
    return loss_fn


@dataclass
class Decoded:
    """Generated captions of one split with what the explanation figures need (notebook 07)."""

    ids: list[str]
    captions: dict[str, str]  # image id -> generated words joined by spaces
    tokens: list[list[str]]
    alphas: list[np.ndarray]  # per image (steps, h, w), one map per generated token (and <end>)
    grid: tuple[int, int]
    extra: dict = field(default_factory=dict)


@torch.no_grad()
def generate(model: LSTMCaptioner, vocab: Vocabulary, images_uint8: np.ndarray, image_ids: list[str],
             config: DecodingConfig | dict | None = None, batch_size: int = 32) -> Decoded:
    """Caption uint8 images (N, H, W, 3) as ``config`` says (a :class:`DecodingConfig` or the recipe's
    ``decoding:`` mapping; greedy when ``num_beams`` is 1), keeping each word's attention map."""
    config = as_config(config)
    model.eval()
    device = next(model.parameters()).device
    tokens, alphas, grid = [], [], (0, 0)
    for start in range(0, len(image_ids), batch_size):
        batch = torch.from_numpy(np.array(images_uint8[start:start + batch_size])).to(device)
        out = lstm_search(model, batch, config)
        grid = out["grid"]
        for row, att in zip(out["ids"].tolist(), out["alphas"].cpu().numpy()):
            words = vocab.decode(row)
            tokens.append(words)
            steps = min(len(words) + 1, len(row))  # the words and the step that emitted <end>
            alphas.append(att[:steps].reshape(steps, *grid))
    captions = {i: " ".join(t) for i, t in zip(image_ids, tokens)}
    return Decoded(list(image_ids), captions, tokens, alphas, tuple(grid))


def build_model(vocab: Vocabulary, labels: list[str], encoder: str, freeze_encoder: bool,
                sizes: dict) -> LSTMCaptioner:
    """A fresh captioner around the ResNet loaded from ``encoder`` (hub id or save_pretrained dir)."""
    cfg = LSTMCaptionerConfig(vocab_size=len(vocab), num_labels=len(labels), pad_id=vocab.pad_id,
                              start_id=vocab.start_id, end_id=vocab.end_id,
                              freeze_encoder=freeze_encoder, **sizes)
    return LSTMCaptioner(cfg, load_visual_encoder(encoder))


def save_trained(model: LSTMCaptioner, directory, vocab: Vocabulary, labels: list[str],
                 text: CaptionTextConfig, info: dict | None = None) -> Path:
    """Weights + vocabulary + label names + text settings, enough for :func:`load_trained`."""
    return model.save(directory, extra={"vocab": vocab.to_dict(), "labels": labels,
                                        "text": vars(text), "info": info or {}})


def load_trained(directory) -> tuple[LSTMCaptioner, Vocabulary, list[str], CaptionTextConfig, dict]:
    model, extra = LSTMCaptioner.load(directory)
    return (model, Vocabulary.from_dict(extra["vocab"]), extra["labels"],
            CaptionTextConfig(**extra["text"]), extra.get("info", {}))


# ---- recipe-driven training ------------------------------------------------------------------

def load_recipe(path, profile: str = "demo") -> dict:
    """The ``paper`` recipe, with the ``demo`` section merged over it when ``profile == "demo"`` (``"rocov2"``:
    paper alone; any other profile is refused), read by :func:`medcap_utils.training.recipe.read_recipe`. Every section
    is a dict of the keys given; ``train`` also carries ``recipe_hash``."""
    from medcap_utils.training.recipe import read_recipe
    from medcap_utils.training.recipe_schema import LstmRecipe

    recipe = read_recipe(path, LstmRecipe, profile=profile, train_as="mapping")
    recipe.pop("recipe_hash")  # every section is a mapping (notebook 07 tabulates them); train keeps the hash
    return recipe


_MODEL_KEYS = ("embed_dim", "semantic_dim", "attention_dim", "decoder_dim", "dropout", "init_state",
               "position_embedding", "position_in_scores",
               "grid_pool", "deep_output")


def _encoder_path(model_cfg: dict, out_dir: Path) -> str:
    """Hub id / directory (a demo stand-in such as ``models/standins/resnet-classifier-general``, resolved from the
    repository; a missing one names ``medcap standins``) as given; for ``encoder: demo`` a small random ResNet written
    with ``save_pretrained`` once, so every path goes through the same ``from_pretrained`` loader."""
    if model_cfg["encoder"] != "demo":
        from medcap_utils.training.blip import model_source

        return model_source(model_cfg["encoder"])
    from transformers import ResNetModel

    from medcap_utils.models.lstm_captioner import small_resnet_config

    width, depths = int(model_cfg.get("width", 16)), tuple(model_cfg.get("depths", (1, 1)))
    from medcap_utils.atomic import atomic_directory
    from medcap_utils.model_files import is_complete, write_checksums

    path = out_dir / f"resnet-init-w{width}-d{'-'.join(map(str, depths))}"
    if not is_complete(path):  # written whole or not at all; a folder left by a kill before this is rewritten
        torch.manual_seed(0)
        with atomic_directory(path) as tmp:
            ResNetModel(small_resnet_config(width, depths)).save_pretrained(tmp)
            write_checksums(tmp)
    return str(path)


def train_captioner(data_dir, recipe: dict, out_dir, train_overrides: dict | None = None,
                    progress: bool = False, fresh: bool = True) -> dict:
    """Train on ``train``, pick the epoch with the best validation BLEU, save to ``out_dir``
    (notebook 07). Returns ``{"model", "vocab", "labels", "text", "history", "seconds"}``."""
    import shutil

    from medcap_utils.training import TrainConfig, fit

    out_dir = Path(out_dir)
    if fresh and (out_dir / "fit").exists():
        shutil.rmtree(out_dir / "fit")  # checkpoints of an earlier run would be resumed otherwise
    out_dir.mkdir(parents=True, exist_ok=True)
    text = CaptionTextConfig(**recipe["text"])
    m = recipe["model"]
    train_frame = split_frame(data_dir, "train")
    vocab = text.build_vocab(train_frame["caption"])
    labels = label_space(train_frame, vocab, text, m.get("label_kind", "concepts"), m.get("label_min_count", 1))
    encoder = _encoder_path(m, out_dir)
    # the initial weights follow the recipe's seed, not whatever ran before in this process
    torch.manual_seed(int(recipe["train"].get("seed", 0)))
    model = build_model(vocab, labels, encoder, m["freeze_encoder"],
                        {k: m[k] for k in _MODEL_KEYS if k in m})
    size = m["image_size"]
    train_set = CaptionImageDataset(data_dir, "train", size, vocab, text, labels, m.get("label_kind", "concepts"),
                                    frame=train_frame)
    valid_frame = split_frame(data_dir, "valid")
    valid_cache = get_image_cache(data_dir, "valid", size)
    valid_images = valid_cache.images[[valid_cache.index[i] for i in valid_frame["id"]]]
    valid_gt = dict(zip(valid_frame["id"], valid_frame["caption"]))
    decoding = recipe.get("decoding", {})

    def evaluate_fn(model, epoch):
        # Greedy decoding for speed; the paper's BLEU on the raw validation captions.
        dec = generate(model, vocab, valid_images, list(valid_frame["id"]),
                       DecodingConfig(num_beams=1, max_new_tokens=decoding.get("max_new_tokens", text.max_len)))
        return {"val_bleu": imageclef_bleu(valid_gt, dec.captions)["bleu"]}

    cfg = TrainConfig.from_dict(recipe["train"], output_dir=str(out_dir / "fit"), progress=progress,
                                **(train_overrides or {}))
    loss = recipe.get("loss", {})
    result = fit(model, train_set, cfg, make_loss_fn(loss.get("alpha_c", 1.0), loss.get("semantic_weight", 1.0)),
                 collate_fn=make_collate(vocab.pad_id, FlipCropConfig(**recipe["augment"])
                                         if recipe.get("augment") else None),
                 evaluate_fn=evaluate_fn,
                 trainable_params=[p for p in model.parameters() if p.requires_grad])
    best = result.best_dir / "model.pt" if result.best_dir else None
    if best is not None and best.exists():
        from medcap_utils.model_files import verify_model_dir

        verify_model_dir(result.best_dir)  # fit() checksums best/: a damaged file is named, not loaded
        model.load_state_dict(torch.load(best, map_location="cpu"))
    model.eval()
    info = {"history": result.history.to_dict("list"), "best": result.best, "seconds": result.wall_time_s,
            "data_dir": str(Path(data_dir).resolve()), "settings": _settings(recipe, train_overrides)}
    save_trained(model, out_dir / "model", vocab, labels, text, info)
    return {"model": model, "vocab": vocab, "labels": labels, "text": text,
            "history": result.history, "seconds": result.wall_time_s, "best": result.best}


def _settings(recipe: dict, train_overrides: dict | None) -> dict:
    """The recipe, flattened to ``section.key``, with the training overrides applied: what a saved model
    records and a later :func:`load_or_train` compares."""
    flat = {f"{section}.{k}": v for section, values in recipe.items() if isinstance(values, dict)
            for k, v in values.items()}
    flat.update({k: v for k, v in recipe.items() if not isinstance(v, dict)})
    flat.update({f"train.{k}": v for k, v in (train_overrides or {}).items()})
    return flat


def load_or_train(data_dir, recipe: dict, out_dir, retrain: bool = False, **kwargs) -> dict:
    """The trained captioner in ``out_dir/model`` if it may be reused, else :func:`train_captioner`.

    Decided by :func:`medcap_utils.training.reuse.should_reuse`: a complete folder trained on the same data
    with the same settings is loaded; other epochs (or max_steps, patience) or other data train it again; any
    other changed setting is refused, naming it. Models saved before the settings were recorded are reused."""
    import pandas as pd

    from medcap_utils.training.reuse import Stale, should_reuse

    target = Path(out_dir) / "model"
    saved: dict = {}

    def recorded() -> dict | None:
        saved["model"], saved["vocab"], saved["labels"], saved["text"], info = load_trained(target)
        if info.get("data_dir") not in (None, str(Path(data_dir).resolve())):
            raise Stale(f"trained on {info['data_dir']}, not on {Path(data_dir).resolve()}")
        saved["info"] = info
        return info.get("settings")

    if should_reuse(target, _settings(recipe, kwargs.get("train_overrides")), recorded, retrain, "captioner"):
        info = saved["info"]
        return {"model": saved["model"], "vocab": saved["vocab"], "labels": saved["labels"], "text": saved["text"],
                "history": pd.DataFrame(info.get("history", {})), "seconds": info.get("seconds", 0.0),
                "best": info.get("best", {})}
    return train_captioner(data_dir, recipe, out_dir, **kwargs)


def train_frozen_encoder_variant(data_dir, recipe: dict, model_dir: Path, encoder: str, retrain: bool = False) -> dict:
    """The paper's setting beside the demo's main model (notebook 07): the same recipe with ``encoder`` (the demo's
    ImageNet stand-in) loaded like ``microsoft/resnet-50`` and frozen, saved in ``<model_dir>-frozen-standin``;
    :func:`load_or_train`'s result."""
    frozen = {section: dict(values) for section, values in recipe.items()}
    frozen["model"].update(encoder=encoder, freeze_encoder=True)
    return load_or_train(data_dir, frozen, Path(model_dir).with_name(Path(model_dir).name + "-frozen-standin"),
                         retrain=retrain)


def caption_scores(gt: dict, systems: dict[str, dict]):
    """One row per system (``{label: {id: caption}}``): the paper's BLEU and :data:`COCO_COLUMNS` on ``gt``, as
    :func:`medcap_utils.evaluation.scores.score_table` lays a table out (notebook 07: scores, encoders)."""
    from medcap_utils.evaluation.scores import score_row, score_table

    return score_table([{"system": label, "paper BLEU": imageclef_bleu(gt, caps)["bleu"],
                         **score_row(gt, {i: caps.get(i, "") for i in gt}, metrics=COCO_COLUMNS)}
                        for label, caps in systems.items()])


# ---- evaluation beside the paper -------------------------------------------------------------

COCO_COLUMNS = ("Bleu_1", "Bleu_4", "ROUGE_L", "CIDEr")  # METEOR (a Java start per call) is in notebook 08


def paper_table1():
    """Seed 004's Table I: BLEU on ImageCLEFmed 2021 caption prediction (test, 444 images)."""
    import pandas as pd

    rows = [("ImageSem [29]", 25.7), ('"Show, Attend and Tell" [16]', 43.7),
            ("Attention-based encoder-decoder [9] (the authors' ImageCLEF 2021 run)", 28.7),
            ("Our proposal (seed 004)", 40.29)]
    return pd.DataFrame([{"method": m, "dataset": "ImageCLEFmed 2021: 2,756/500/444 images", "BLEU (%)": b}
                         for m, b in rows])
