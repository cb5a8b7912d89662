"""Notebook ``03_medblip_ablation``, seed 001 (MedBLIP): BLIP zero-shot vs fine-tuned (full, decoder-only,
encoder-only) and the comparison models ViT-GPT2, BLIP-2 and InstructBLIP, with wall-clock training time per variant.

The paper's claims checked here: full fine-tuning is best; decoder-only fine-tuning (vision encoder
frozen) is close to it at about 5% less training time. Variants share one start model, one training
configuration and one data order, so their times and scores compare. Every model's test captions are
written as a run directory (``reports/runs/medblip_<name>/``) for notebook 08. Used by notebook 03.

Demo profile: no hub weights exist offline, so BLIP starts from its pretrained stand-in (``medcap standins``:
a small BLIP pretrained on the general synthetic domain, the recipe's ``demo: model``), reached through the same
code path as a hub id; "zero-shot" is that stand-in applied to medical images. The comparison models have no
stand-in yet: they are small random configurations trained on the demo data (:data:`COMPARISON_DEMO_TRAIN`);
every such row says so in its ``setting`` column.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from medcap_utils.paths import resolve

#: Scores in the comparison table (COCO names, ImageCLEF ROUGE-1, modality mention rate).
SCORES = ("Bleu_1", "Bleu_4", "ROUGE_L", "CIDEr", "rouge1", "modality_rate")

#: variant -> (freeze_vision, freeze_text); None = no training.
VARIANTS = {
    "zero_shot": None,
    "full": (False, False),
    "decoder_only": (True, False),  # seed 001: "decoder-only fine-tuning (encoder-frozen)"
    "encoder_only": (False, True),  # text decoder (with its cross-attention) frozen
}


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def run_blip_variant(variant: str, init_dir: str | Path, train, cfg, max_length: int = 200,
                     label_smoothing: float | None = 0.1):
    """Load the start model from ``init_dir``, fine-tune it as ``variant`` and return
    ``(model, processor, info)``; ``info`` has ``train_time_s`` (the loop's wall clock), parameter
    counts and the last epoch's training loss."""
    from medcap_utils.models.blip import load_blip
    from medcap_utils.training.blip import finetune_blip

    if variant not in VARIANTS:
        raise KeyError(f"unknown variant {variant!r}; known: {list(VARIANTS)}")
    model, processor = load_blip(init_dir)
    info = {"variant": variant, "train_time_s": 0.0, "train_loss": float("nan")}
    if VARIANTS[variant] is not None:
        freeze_vision, freeze_text = VARIANTS[variant]
        result = finetune_blip(model, processor, train, cfg, valid=None, max_length=max_length,
                               label_smoothing=label_smoothing, freeze_vision=freeze_vision,
                               freeze_text=freeze_text, eval_images=0)
        info.update(train_time_s=result.train_time_s, train_loss=float(result.history["train_loss"].iloc[-1]),
                    epochs=int(len(result.history)), steps=result.global_step)
    info["trainable_params"], info["total_params"] = count_parameters(model)
    for p in model.parameters():  # leave the model fully trainable for whoever uses it next
        p.requires_grad_(True)
    return model.eval(), processor, info


def _fit_and_time(model, train, cfg, loss_fn, collate) -> dict:
    from medcap_utils.training import fit

    result = fit(model, train, cfg, loss_fn, collate_fn=collate)
    trainable, total = count_parameters(model)
    return {"train_time_s": result.train_time_s, "train_loss": float(result.history["train_loss"].iloc[-1]),
            "epochs": int(len(result.history)), "steps": result.global_step, "trainable_params": trainable,
            "total_params": total}


def baseline_captioner(kind: str, model_dir: str | Path | None = None, train=None, cfg=None,
                       build_kwargs: dict | None = None, max_length: int = 200):
    """``(Captioner, info)`` for a comparison model, ``kind`` in ``vit_gpt2 | blip2 | instructblip``;
    ``(None, info)`` with ``info["skipped"]`` saying why when a hub checkpoint cannot fit the device.

    With ``train`` and ``cfg``: a small random model of the real architecture is built in
    ``model_dir`` (its tokenizer trained on the training captions), trained, and used (demo).
    Without: the hub checkpoint (or ``model_dir``) is used zero-shot, as in the paper.
    """
    from medcap_utils.decoding.captioners import blip2_captioner, encoder_decoder_captioner
    from medcap_utils.models import blip2, vit_gpt2
    from medcap_utils.models.causal_tokenizer import train_causal_tokenizer

    if kind not in ("vit_gpt2", "blip2", "instructblip"):
        raise KeyError(f"unknown comparison model {kind!r}")
    instruct = kind == "instructblip"
    info = {"variant": kind, "train_time_s": 0.0, "train_loss": float("nan")}
    if train is not None:
        model_dir = Path(resolve(model_dir))
        tokenizer = train_causal_tokenizer(train.captions, vocab_size=1000)
        kwargs = {"image_size": train.cache.size, **(build_kwargs or {})}
        from medcap_utils.atomic import atomic_directory
        from medcap_utils.model_files import write_checksums

        with atomic_directory(model_dir) as tmp:  # the start model is complete or absent, never half-written
            if kind == "vit_gpt2":
                vit_gpt2.build_demo_vit_gpt2(tmp, tokenizer, **kwargs)
            else:
                blip2.build_demo_blip2(tmp, tokenizer, instruct=instruct, **kwargs)
            write_checksums(tmp)
    source = model_dir or (vit_gpt2.VIT_GPT2_ID if kind == "vit_gpt2"
                           else blip2.INSTRUCTBLIP_ID if instruct else blip2.BLIP2_ID)
    if train is None:  # used as it is: a hub id, or a folder such as a demo stand-in (missing: names its builder)
        from medcap_utils.training.blip import model_source

        info["model"] = str(source)  # run.json says what was used zero-shot, as the recipe names it
        source = model_source(str(source))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if train is None:  # a hub checkpoint zero-shot: skip up front what cannot fit this device
        from medcap_utils.memory import fits_device

        fit = fits_device(source, "inference", device=device, name=f"{kind} ({source})")
        if not fit.ok:
            return None, {**info, "skipped": fit.message, "trainable_params": 0, "total_params": 0}
    if kind == "vit_gpt2":
        model, image_processor, tokenizer = vit_gpt2.load_vit_gpt2(source)
        if train is None:
            model.to(device)
        if train is not None:
            info.update(_fit_and_time(model, train, cfg, vit_gpt2.make_vit_gpt2_loss(image_processor),
                                      vit_gpt2.make_vit_gpt2_collate(tokenizer, max_length)))
        captioner = encoder_decoder_captioner(model.eval(), image_processor, tokenizer)
    else:
        model, processor = blip2.load_blip2(source, instruct=instruct, device=None if train is not None else device)
        if train is not None:
            info.update(_fit_and_time(model, train, cfg, blip2.blip2_loss, blip2.make_blip2_collate(model, processor)))
        captioner = blip2_captioner(model.eval(), processor)
    if "trainable_params" not in info:
        info["trainable_params"], info["total_params"] = count_parameters(model)
    return captioner, info


def score_predictions(name: str, preds: dict, test, data_dir: str | Path, split: str = "test",
                      run_prefix: str = "medblip", meta: dict | None = None) -> dict:
    """Score ``{id: caption}`` on ``test`` (a ``CaptionImageCacheDataset``) and write the run directory.

    Row (:func:`medcap_utils.evaluation.scores.score_dataset`): BLEU-1/4, ROUGE-L, CIDEr (pycocoevalcap;
    METEOR left out to save a Java start per model), the ImageCLEF ROUGE-1, and the share of captions naming
    the image's modality.
    """
    from medcap_utils.evaluation.runfiles import write_run_dir
    from medcap_utils.evaluation.scores import score_dataset

    run_dir = write_run_dir(f"{run_prefix}_{name}", "captions", split, str(data_dir), preds, meta=meta or {})
    # 100 resamples: the confidence intervals written to the run directory's scores.json
    row = score_dataset(test, preds, metrics=SCORES[:-1], bootstrap=100, out_dir=run_dir)
    return {"model": name, **row, "run_dir": str(run_dir)}


def score_model(name: str, captioner, test, data_dir: str | Path, split: str = "test", batch_size: int = 32,
                max_new_tokens: int = 40, num_beams: int = 1, no_repeat_ngram_size: int = 3,
                run_prefix: str = "medblip", meta: dict | None = None) -> tuple[dict, dict]:
    """Caption ``test`` with ``captioner`` (greedy, no_repeat_ngram_size 3 by default), then
    :func:`score_predictions`. Returns ``(row, predictions)``; the row adds captions/s."""
    from medcap_utils.decoding.captioners import caption_split_with_speed
    from medcap_utils.decoding.config import DecodingConfig

    images = test.images()
    if captioner.image_size != test.cache.size:  # e.g. ViT-GPT2 at 224 beside BLIP at 384: its own cache
        from medcap_utils.data.cache import get_image_cache

        cache = get_image_cache(resolve(data_dir), split, captioner.image_size)
        images = cache.images[[cache.index[i] for i in test.ids]]
    config = DecodingConfig(num_beams=num_beams, max_new_tokens=max_new_tokens,
                            no_repeat_ngram_size=no_repeat_ngram_size)
    preds, speed = caption_split_with_speed(captioner, images, test.ids, config, batch_size=batch_size)
    run_meta = {"model": name, "num_beams": num_beams, "no_repeat_ngram_size": no_repeat_ngram_size,
                "max_new_tokens": max_new_tokens, **speed, **(meta or {})}
    row = score_predictions(name, preds, test, data_dir, split, run_prefix, run_meta)
    row["captions_per_s"] = speed["captions_per_s"]
    return row, preds


def time_table(infos: list[dict]) -> pd.DataFrame:
    """Training time per variant and relative to full fine-tuning (seed 001: decoder-only about 5% less)."""
    frame = pd.DataFrame(infos)
    full = frame.loc[frame["variant"] == "full", "train_time_s"]
    if len(full) and full.iloc[0] > 0:
        frame["time_vs_full"] = frame["train_time_s"] / full.iloc[0]
    return frame


RECIPE = "configs/recipes/medblip-2025.yaml"

#: Demo only: how the comparison models (ViT-GPT2, BLIP-2, InstructBLIP) are trained. They have no pretrained
#: stand-in yet, so they still train from random weights, with the from-scratch settings notebook 03 used before
#: BLIP got its stand-in (a high learning rate, 2 epochs); BLIP's variants train with the recipe's ``demo:`` section.
COMPARISON_DEMO_TRAIN = {"epochs": 2, "lr": 3e-3, "batch_size": 16, "warmup_steps": 10}
COMPARISON_DEMO_WIDTH = 64  # hidden size of the demo comparison models (notebook 03's ``width``: 0 means this)


def ablation_recipe(profile: str = "demo", recipe_path: str | Path = RECIPE, width: int | None = None,
                    **train_overrides) -> dict:
    """The MedBLIP recipe for ``profile`` (``blip`` section, plus its ``demo`` section in the demo), with notebook
    03's TrainConfig overrides (zeros / None mean "the recipe's value"). ``width`` changes the hidden size only of
    a demo BLIP built from scratch (a recipe with ``model: null``); a pretrained stand-in keeps its own."""
    from medcap_utils.training.blip import load_blip_recipe

    recipe = load_blip_recipe(recipe_path, "blip", profile, **{k: v for k, v in train_overrides.items() if v})
    if profile == "demo" and width and not recipe["model"]:
        recipe["build"] = {**recipe["build"], "vision_hidden": width, "text_hidden": width}
    recipe["train"] = recipe["train"].replace(progress=False, output_dir=None)
    return recipe


def comparison_config(recipe: dict, profile: str = "demo"):
    """The TrainConfig of the trained comparison models: the recipe's, with :data:`COMPARISON_DEMO_TRAIN` over it in
    the demo (they start from random weights, BLIP from its stand-in)."""
    return recipe["train"].replace(**COMPARISON_DEMO_TRAIN) if profile == "demo" else recipe["train"]


def settings_text(recipe: dict, profile: str = "demo") -> str:
    """The resolved settings notebook 03 trains with, one line each (printed by the notebook)."""
    cfg, comp = recipe["train"], comparison_config(recipe, profile)
    start = recipe["model"] or f"demo BLIP built from scratch {recipe['build']}"
    return "\n".join([
        f"BLIP start model: {start}",
        f"BLIP variants: {cfg.epochs} epochs, batch {cfg.batch_size}, lr {cfg.lr:g}, warmup {cfg.warmup_steps} steps, "
        f"{cfg.scheduler} schedule, weight decay {cfg.weight_decay:g}, image size {recipe['image_size']}, "
        f"max_length {recipe['max_length']}",
        f"comparison models: {comp.epochs} epochs, batch {comp.batch_size}, lr {comp.lr:g}, warmup {comp.warmup_steps}",
        f"decoding: {recipe['decoding']}"])


def load_or_train_variant(variant: str, data_dir: str | Path, out_dir: str | Path, recipe: dict | None = None,
                          train=None, retrain: bool = False):
    """``(model, processor, info)`` of one variant, saved in ``out_dir/<variant>`` (loaded when
    :func:`medcap_utils.training.reuse.should_reuse` says so, trained otherwise). ``recipe`` defaults to the
    demo recipe (its ``demo:`` section, as notebook 03's defaults); ``train`` to the whole training split. Used by
    notebooks 03 and 04."""
    import json

    from medcap_utils.atomic import atomic_directory
    from medcap_utils.model_files import write_checksums
    from medcap_utils.models.blip import load_blip
    from medcap_utils.training.blip import recorded_settings, start_model
    from medcap_utils.training.captioning_data import caption_dataset
    from medcap_utils.training.reuse import should_reuse

    path = Path(resolve(out_dir)) / variant
    if recipe is None:
        recipe = ablation_recipe("demo")
    if should_reuse(path, recorded_settings(recipe),
                    lambda: json.loads((path / "train_info.json").read_text()).get("settings"), retrain, "variant"):
        model, processor = load_blip(path)
        return model.eval(), processor, json.loads((path / "train_info.json").read_text())
    if train is None:
        train = caption_dataset(resolve(data_dir), "train", recipe["image_size"])
    init = start_model(recipe, data_dir, out_dir)
    model, processor, info = run_blip_variant(variant, init, train, recipe["train"], recipe["max_length"],
                                              recipe["label_smoothing"])
    info["train_images"] = len(train)
    info["settings"] = recorded_settings(recipe)  # compared by the next call before it reuses the folder
    with atomic_directory(path) as tmp:  # complete (train_info.json and checksums included) or absent
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        (tmp / "train_info.json").write_text(json.dumps(info, indent=2))
        write_checksums(tmp)
    return model, processor, info
