"""Fine-tune BLIP with a recipe from ``configs/recipes/`` on the shared Accelerate loop.

Used by notebooks 02 (both recipes), 03 (MedBLIP variants, through ``freeze_vision``/``freeze_text``)
and 04 (``load_or_train_demo_blip``). The same function runs a real recipe on a GPU:

    python -m medcap_utils.training.blip --recipe configs/recipes/2q2t-2024.yaml --model-key blip_base \
        --profile rocov2 --data-dir /data/rocov2 --out reports/models/2q2t_blip_base
    accelerate launch --multi_gpu --num_processes 8 -m medcap_utils.training.blip ...  (same arguments)

A recipe file has one section per model (``blip_base``, ``blip_large``, ...) with model settings and a
``train:`` mapping of :class:`~medcap_utils.training.TrainConfig`; its ``demo:`` section is merged over
every model section when ``profile == "demo"`` (small model built offline, few epochs).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medcap_utils.atomic import atomic_directory
from medcap_utils.model_files import is_complete, write_checksums
from medcap_utils.paths import resolve
from medcap_utils.training import TrainConfig, TrainResult, fit
from medcap_utils.training.recipe import merge, read_recipe
from medcap_utils.training.recipe_schema import BlipModel

#: Fields of a model section besides ``train`` (defaults used when a recipe leaves them out): the defaults
#: of the schema :class:`~medcap_utils.training.recipe_schema.BlipModel`, the base layer under every BLIP recipe.
MODEL_DEFAULTS: dict[str, Any] = {
    f.name: (f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)
    for f in dataclasses.fields(BlipModel) if f.name not in ("train", "notes")}


def _merge(base: dict, over: dict) -> dict:
    """Kept for callers of the old name: :func:`medcap_utils.training.recipe.merge`."""
    return merge(base, over or {})


def load_blip_recipe(path: str | Path, model_key: str, profile: str = "demo", variant: str | None = None,
                     **train_overrides) -> dict:
    """``{..model settings.., "train": TrainConfig, "recipe_hash": str}`` for one model of a recipe file.

    Read by :func:`medcap_utils.training.recipe.read_recipe` (types checked, unknown keys and a missing ``train:``
    refused). Merge order: defaults < model section < ``authors_code`` (when ``variant == "authors_code"``)
    < ``demo`` (profile demo) < ``variants[variant]`` (e.g. MedBLIP's ``decoder_only``) < ``train_overrides``
    (None values ignored).
    """
    overrides = {k: v for k, v in train_overrides.items() if v is not None}
    return read_recipe(resolve(path), BlipModel, model=model_key, profile=profile, variant=variant,
                       overrides={"train": overrides} if overrides else None, defaults=MODEL_DEFAULTS)


def make_evaluate_fn(processor, valid, n_images: int = 200, decoding: dict | None = None, batch_size: int = 64):
    """Per-epoch validation metrics of generated captions: BLEU-4 (pycocoevalcap) and modality mention rate.
    ``decoding``: the recipe's ``decoding:`` mapping over the BLIP default (:class:`DecodingConfig` fields)."""
    from medcap_utils.decoding.caption import caption
    from medcap_utils.decoding.config import DecodingConfig
    from medcap_utils.metrics.coco import coco_scores
    from medcap_utils.metrics.modality import modality_mention_rate

    idx = np.arange(min(n_images, len(valid)))
    images = valid.images(idx)
    refs = {valid.ids[i]: valid.captions[i] for i in idx}
    mods = [valid.modalities[i] for i in idx]
    config = DecodingConfig.from_mapping({**MODEL_DEFAULTS["decoding"], **(decoding or {})})

    def evaluate(model, epoch: int) -> dict[str, float]:
        caps = caption(model, images, config, batch_size=batch_size, processor=processor)
        scores = coco_scores(refs, dict(zip(refs, caps)), metrics=["Bleu_4"])
        return {"val_bleu4": scores["Bleu_4"], "val_modality_rate": modality_mention_rate(caps, mods)}

    return evaluate


def finetune_blip(model, processor, train, cfg: TrainConfig, valid=None, max_length: int = 200,
                  label_smoothing: float | None = 0.1, freeze_vision: bool = False, freeze_text: bool = False,
                  prompt: str | None = None, eval_images: int = 200, decoding: dict | None = None,
                  fast: bool = False, compile: bool = False, on_step=None,
                  length_grouped: bool = True) -> TrainResult:
    """Fine-tune ``model`` in place on a :class:`CaptionImageCacheDataset` (validation loss and caption
    metrics per epoch when ``valid`` is given). Freezing switches: vision encoder / text decoder.

    ``fast``: train through :mod:`medcap_utils.models.blip_fast`: SDPA attention, chunked cross-entropy,
    batches of similar caption length when ``length_grouped`` (same loss and gradients per batch; the model
    is given back with its eager attention). ``compile``: ``torch.compile`` the vision encoder and text decoder
    (GPU runs).
    ``on_step(global_step)`` is passed to :func:`fit` (the benchmark times steps with it)."""
    from medcap_utils.models.blip import freeze, make_blip_loss, set_label_smoothing
    from medcap_utils.models.blip_fast import (
        LengthGroupedSampler,
        caption_lengths,
        compile_blip,
        images_to_device,
        make_fast_blip_loss,
        no_cudnn_attention,
        sdpa_attention,
    )
    from medcap_utils.training.captioning_data import make_caption_collate

    if label_smoothing is not None:
        set_label_smoothing(model, label_smoothing)
    trainable = freeze(model, vision_encoder=freeze_vision, text_decoder=freeze_text)
    collate = make_caption_collate(processor.tokenizer, model.config.text_config.bos_token_id, max_length, prompt)
    evaluate = make_evaluate_fn(processor, valid, eval_images, decoding) if valid is not None and eval_images else None
    if compile:
        compile_blip(model)
    if not fast:
        return fit(model, train, cfg, make_blip_loss(processor), collate_fn=collate, valid_dataset=valid,
                   evaluate_fn=evaluate, trainable_params=trainable, on_step=on_step)
    sampler = None
    if length_grouped:
        texts = [f"{prompt} {c}" if prompt else c for c in train.captions]
        sampler = LengthGroupedSampler(caption_lengths(processor.tokenizer, texts, max_length), cfg.batch_size,
                                       cfg.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    device_images = images_to_device(train.cache, device)
    if device_images is not None:  # pixels are taken on the GPU by row; workers only tokenise
        train = train.without_images()
    loss_fn = make_fast_blip_loss(processor, device_images=device_images)
    with sdpa_attention(model), no_cudnn_attention():  # captions are right-padded by caption_targets
        return fit(model, train, cfg, loss_fn, collate_fn=collate, valid_dataset=valid, evaluate_fn=evaluate,
                   trainable_params=trainable, on_step=on_step, sampler=sampler)


#: Where ``medcap standins`` saves the demo's pretrained stand-ins (configs/recipes/standins.yaml), repository-relative.
STANDINS_DIR = "models/standins"


def model_source(model: str) -> str:
    """A recipe's ``model`` as ``load_blip`` takes it: an existing folder (repository-relative or absolute) as its
    absolute path, anything else as a hub id. A stand-in folder that is missing or half-written raises
    FileNotFoundError naming ``medcap standins``, the command that builds it."""
    path = Path(resolve(model))
    standin = Path(model).as_posix().startswith(STANDINS_DIR + "/") or STANDINS_DIR in path.as_posix()
    if standin and not is_complete(path):
        raise FileNotFoundError(f"{path}: no finished stand-in model there; build it with `medcap standins` "
                                "(notebook 00 runs it; configs/recipes/standins.yaml says how)")
    return str(path) if path.is_dir() else model


def start_model(recipe: dict, data_dir: str | Path, out_dir: str | Path) -> str:
    """Where a recipe's training starts (notebooks 02, 03, 04): the recipe's ``model`` (hub id, or a directory
    such as a demo stand-in, see :func:`model_source`) when set, otherwise the demo BLIP built offline once in
    ``out_dir/init`` (its WordPiece trained on the training captions; ``load_blip`` of the returned path gives the
    model and processor)."""
    from medcap_utils.data.rocov2 import split_frame
    from medcap_utils.models.blip import build_demo_blip

    if recipe["model"]:
        return model_source(recipe["model"])
    init = Path(resolve(out_dir)) / "init"
    if not is_complete(init):  # built whole or not at all; a folder left by a kill before this is rebuilt
        captions = split_frame(resolve(data_dir), "train")["caption"].tolist()
        with atomic_directory(init) as tmp:
            build_demo_blip(tmp, captions, image_size=recipe["image_size"], **recipe["build"])
            write_checksums(tmp)
    return str(init)


#: Sub-folders of a model folder that are not part of the saved model (start model, checkpoints).
_NOT_MODEL = ("init", "run")


def save_trained_blip(out: Path, model, processor, result: TrainResult, info: dict) -> None:
    """Model, processor, ``history.csv`` and ``train_info.json`` into ``out`` (which also holds ``init/`` and
    ``run/``, so it is not replaced as a whole): the checksum file is removed first and written last, so a
    kill or a full disk in between leaves a folder that :func:`load_or_train_demo_blip` does not take for
    finished and that every loader refuses by name."""
    from medcap_utils.atomic import atomic_write_json, disk_full_as_error
    from medcap_utils.model_files import CHECKSUMS

    (out / CHECKSUMS).unlink(missing_ok=True)
    with disk_full_as_error(out):
        model.save_pretrained(out)
        processor.save_pretrained(out)
        result.history.to_csv(out / "history.csv", index=False)
    atomic_write_json(out / "train_info.json", info)
    write_checksums(out, exclude=_NOT_MODEL)


def recorded_settings(recipe: dict) -> dict:
    """What a finished model folder records of the recipe it was trained with (``train_info.json``)."""
    return {"recipe": {k: v for k, v in recipe.items() if k != "train"}, "train": recipe["train"].to_dict()}


def train_blip_recipe(recipe: dict, data_dir: str | Path, out_dir: str | Path, train_limit: int | None = None,
                      valid_limit: int | None = None) -> tuple[Any, Any, TrainResult]:
    """Build/load the start model, fine-tune with ``recipe``, save model + processor + history to ``out_dir``."""
    from medcap_utils.training.captioning_data import caption_dataset

    out = Path(resolve(out_dir))
    size = recipe["image_size"]
    cfg = recipe["train"]
    plan = None
    if torch.cuda.is_available() and recipe["model"]:  # before loading: keep the effective batch within this GPU
        from medcap_utils.device import resolve_mixed_precision
        from medcap_utils.memory import model_config, plan_batch

        plan = plan_batch(model_config(recipe["model"]), cfg.batch_size, cfg.grad_accum, image_size=size,
                          text_tokens=recipe["max_length"], name=recipe["model"],
                          mixed_precision=resolve_mixed_precision(cfg.mixed_precision, verbose=False).value)
        cfg = plan.apply(cfg)  # MemoryError with the estimate when even micro-batch 1 cannot fit
    from medcap_utils.models.blip import load_blip

    model, processor = load_blip(start_model(recipe, data_dir, out))
    train = caption_dataset(resolve(data_dir), "train", size, limit=train_limit)
    valid = caption_dataset(resolve(data_dir), "valid", size, limit=valid_limit)
    if cfg.output_dir is None:
        cfg = cfg.replace(output_dir=str(out / "run"))
    result = finetune_blip(model, processor, train, cfg, valid, recipe["max_length"], recipe["label_smoothing"],
                           recipe["freeze_vision"], recipe["freeze_text"], recipe["prompt"], recipe["eval_images"],
                           recipe["decoding"], recipe["fast"])
    from accelerate import PartialState

    if PartialState().is_main_process:  # under `accelerate launch`, one writer
        save_trained_blip(out, model, processor, result, {
            "train_time_s": result.train_time_s, "best": result.best, "global_step": result.global_step,
            **recorded_settings({**recipe, "train": cfg}),
            "mixed_precision_used": result.mixed_precision, "precision_reason": result.precision_reason,
            "memory_plan": plan.message if plan else None})
    return model, processor, result


def load_or_train_demo_blip(data_dir: str | Path = "data/demo", out_dir: str | Path = "reports/models/blip_demo",
                            recipe_path: str | Path = "configs/recipes/2q2t-2024.yaml", model_key: str = "blip_base",
                            retrain: bool = False):
    """The demo BLIP of notebook 02 (loaded if saved, trained otherwise); notebooks 03 and 04 use it.

    Reused or trained by :func:`medcap_utils.training.reuse.should_reuse`: a complete folder trained with the
    same settings is loaded; other epochs (or max_steps, patience) train on from its checkpoints; any other
    changed setting is refused, naming it (``retrain=True`` trains again from scratch, checkpoints included)."""
    import shutil

    from medcap_utils.models.blip import load_blip
    from medcap_utils.training.reuse import should_reuse

    out = Path(resolve(out_dir))
    recipe = load_blip_recipe(recipe_path, model_key, "demo")

    def recorded() -> dict:  # train_info.json also holds the run's results (time, best epoch)
        info = json.loads((out / "train_info.json").read_text())
        return {"recipe": info.get("recipe", {}), "train": info.get("train", {})}

    if should_reuse(out, recorded_settings(recipe), recorded, retrain, what=f"BLIP ({recipe_path}, {model_key}, demo)"):
        return load_blip(out)
    if retrain and (out / "run").exists():
        shutil.rmtree(out / "run")  # otherwise the finished run's checkpoints would be resumed, not retrained
    model, processor, _ = train_blip_recipe(recipe, data_dir, out)
    return model, processor


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    ap = argparse.ArgumentParser(prog=prog or "python -m medcap_utils.training.blip",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--recipe", required=True)
    ap.add_argument("--model-key", required=True, help="model section of the recipe, e.g. blip_base")
    ap.add_argument("--profile", default="rocov2", choices=["demo", "rocov2"])
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--variant",
                    help="recipe variant, e.g. authors_code or MedBLIP's full / decoder_only / encoder_only")
    ap.add_argument("--model", help="override the recipe's start checkpoint (hub id or directory)")
    ap.add_argument("--fast", action="store_true", help="train through medcap_utils.models.blip_fast")
    for name, typ in [("epochs", int), ("batch-size", int), ("grad-accum", int), ("lr", float),
                      ("mixed-precision", str), ("checkpoint-every-steps", int), ("num-workers", int)]:
        ap.add_argument(f"--{name}", type=typ)
    args = ap.parse_args(argv)
    overrides = {k: getattr(args, k.replace("-", "_")) for k in
                 ["epochs", "batch_size", "grad_accum", "lr", "mixed_precision", "checkpoint_every_steps",
                  "num_workers"]}
    import sys

    from medcap_utils.data.rocov2 import MalformedCSVError
    from medcap_utils.hub import HubModelError
    from medcap_utils.training.recipe import RecipeError

    start = time.perf_counter()
    try:
        recipe = load_blip_recipe(args.recipe, args.model_key, args.profile, args.variant, **overrides)
        if args.model:
            recipe["model"] = args.model
        if args.fast:
            recipe["fast"] = True
        _, _, result = train_blip_recipe(recipe, args.data_dir, args.out)
    except (RecipeError, HubModelError, MalformedCSVError, FileNotFoundError) as err:
        # a recipe key, checkpoint, dataset CSV or path the user can fix: one line naming it, no traceback
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(result.history.to_string(index=False))
    print(f"trained in {time.perf_counter() - start:.0f} s; model saved to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
