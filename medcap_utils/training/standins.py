"""``medcap standins [--only ROLE]``: the demo's pretrained stand-ins (issue 17), built by notebook 00_data_setup so
that notebook 03 (and later others) start from a pretrained model as the rocov2 profile starts from a hub checkpoint.

Each role of ``configs/recipes/standins.yaml`` is pretrained the way its original was, on the general synthetic
domain (:mod:`medcap_utils.data.synth_general`, written to the recipe's ``data.dir`` when missing), through the
project's trainer (:func:`medcap_utils.training.blip.finetune_blip` -> :func:`medcap_utils.training.fit`), and saved
with ``save_pretrained`` into the recipe's ``out`` folder (``models/standins/<role>/``, checksums last):

* ``blip-captioning-general``: ``BlipForConditionalGeneration``, text decoder from MiniLM
  (:mod:`medcap_utils.models.blip_standin`), language modelling on image-caption pairs, as BLIP's captioner.
* ``resnet-classifier-general``: ``ResNetForImageClassification``, supervised classification of what a scene holds,
  as ImageNet's ResNets (:mod:`medcap_utils.training.standin_resnet`); notebook 07 starts from it, frozen.
* ``vit-gpt2-captioning-general``: ``VisionEncoderDecoderModel`` (ViT + GPT-2), language modelling on image-caption
  pairs, as ``nlpconnect/vit-gpt2-image-captioning`` on COCO (:mod:`medcap_utils.training.standin_vit_gpt2`);
  notebook 03 uses it zero-shot.

Cached: a folder is reused when it is complete (checksums verified) and its ``standin.json`` records the same key,
the hash of the resolved recipe section plus a fingerprint of the caption files its vocabulary comes from;
otherwise the stand-in is built again (a changed recipe rebuilds; nothing is refused). ``standin.json`` also holds
the pretraining time and the stand-in's own quality on the general valid split (BLEU-4, distinct captions).
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import time
from pathlib import Path

from medcap_utils.paths import resolve

RECIPE = "configs/recipes/standins.yaml"
#: the roles of configs/recipes/standins.yaml built so far (each saved in its section's ``out`` folder)
ROLES = ("blip-captioning-general", "resnet-classifier-general", "vit-gpt2-captioning-general")
INFO = "standin.json"


def standin_recipe(role: str, recipe_path: str | Path = RECIPE) -> dict:
    """The resolved recipe section of ``role`` (types checked by the project's recipe reader)."""
    from medcap_utils.training.recipe import read_recipe
    from medcap_utils.training.recipe_schema import StandinBlip, StandinResnet, StandinVitGpt2

    if role not in ROLES:
        raise KeyError(f"unknown stand-in role {role!r}; roles: {list(ROLES)}")
    schema = {"resnet-classifier-general": StandinResnet, "vit-gpt2-captioning-general": StandinVitGpt2}.get(
        role, StandinBlip)
    defaults = {f.name: (f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)
                for f in dataclasses.fields(schema)
                if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING}
    return read_recipe(resolve(recipe_path), schema, model=role, profile="demo", defaults=defaults)


def ensure_general_data(data: dict) -> Path:
    """The general domain of a recipe's ``data`` section, synthesized when missing or written with other settings."""
    from medcap_utils.atomic import atomic_directory
    from medcap_utils.data import synth_general
    from medcap_utils.data.synth_general import synthesize_general

    root = Path(resolve(data["dir"]))
    wanted = {"seed": data.get("seed", 0), "n_train": data.get("n_train", 3000), "n_valid": data.get("n_valid", 300)}
    generator = hashlib.sha256(Path(synth_general.__file__).read_bytes()).hexdigest()  # a changed grammar rebuilds
    marker = root / "synth_general.json"
    if marker.exists() and json.loads(marker.read_text()).get("settings") == {**wanted, "generator": generator}:
        return root
    with atomic_directory(root) as tmp:
        summary = synthesize_general(tmp, **wanted)
        (tmp / "synth_general.json").write_text(json.dumps({"settings": {**wanted, "generator": generator},
                                                            "summary": summary}, indent=2))
    print(f"{root}: general domain written ({wanted['n_train']} train / {wanted['n_valid']} valid, "
          f"{summary['seconds']} s)")
    return root


def caption_texts(dirs: list[str]) -> list[str]:
    """Every caption of every split in ``dirs`` (ROCOv2 layout); a missing folder is an error naming its builder."""
    from medcap_utils.data.rocov2 import read_captions

    texts = []
    for d in dirs:
        files = sorted(Path(resolve(d)).glob("*_captions.csv"))
        if not files:
            raise FileNotFoundError(f"{resolve(d)}: no *_captions.csv; build it first (`medcap data synth --out {d}` "
                                    f"for the demo data, notebook 00)")
        for f in files:
            texts += read_captions(f)["Caption"].tolist()
    return texts


def _fingerprint(dirs: list[str]) -> str:
    h = hashlib.sha256()
    for d in dirs:
        for f in sorted(Path(resolve(d)).glob("*_captions.csv")):
            h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()


def cache_key(recipe: dict) -> str:
    """Hash of the resolved recipe section and of the captions its vocabulary is cut from."""
    return hashlib.sha256(f"{recipe['recipe_hash']}:{_fingerprint(recipe.get('vocab_from', []))}".encode()).hexdigest()


def cached(out: Path, key: str) -> str | None:
    """None when ``out`` holds the stand-in for ``key``; else why it must be built."""
    from medcap_utils.model_files import CorruptModelError, is_complete, verify_model_dir

    if not is_complete(out):
        return "no finished stand-in there"
    try:
        verify_model_dir(out, require_checksums=True)
    except CorruptModelError as err:
        return f"{err.file} {err.problem}"
    recorded = json.loads((out / INFO).read_text()).get("key") if (out / INFO).exists() else None
    return None if recorded == key else "its recipe (or vocabulary source) changed"


def evaluate_standin(model, processor, valid, decoding: dict, n_images: int, tokenizer=None) -> dict:
    """A captioner stand-in's own quality on the general valid split: BLEU-4 and distinct captions of ``n_images``
    (``tokenizer``: ViT-GPT2's, beside its image processor)."""
    from medcap_utils.decoding.caption import caption
    from medcap_utils.decoding.config import DecodingConfig
    from medcap_utils.metrics.coco import coco_scores

    n = min(n_images, len(valid))
    caps = caption(model.eval(), valid.images(list(range(n))), DecodingConfig.from_mapping(decoding),
                   processor=processor, tokenizer=tokenizer)
    refs = {valid.ids[i]: valid.captions[i] for i in range(n)}
    bleu = coco_scores(refs, dict(zip(refs, caps)), metrics=["Bleu_4"])["Bleu_4"]
    exact = sum(c.strip(" .") == valid.captions[i].strip(" .") for i, c in enumerate(caps))
    return {"valid_images": n, "valid_bleu4": round(float(bleu), 4), "valid_distinct_captions": len(set(caps)),
            "valid_reference_distinct": len(set(valid.captions[:n])), "valid_exact_match": exact,
            "examples": [{"reference": valid.captions[i], "caption": caps[i]} for i in range(min(5, n))]}


def prepare(recipe: dict, retrain: bool) -> tuple[Path, Path, str, dict | None]:
    """``(out, general data folder, cache key, standin.json record or None)`` for a builder: the record when the
    folder may be reused (nothing more to do), None when the stand-in must be pretrained (the line says why)."""
    out = Path(resolve(recipe["out"]))
    data = ensure_general_data(recipe["data"])
    key = cache_key(recipe)
    why = "retrain asked" if retrain else cached(out, key)
    if why is None:
        print(f"{out}: stand-in built with the same recipe (key {key[:12]}); reusing it")
        return out, data, key, json.loads((out / INFO).read_text())
    print(f"{out}: {why}; pretraining the stand-in")
    return out, data, key, None


def finish(folder: Path, role: str, recipe: dict, key: str, result, start: float, **extra) -> dict:
    """Write a freshly pretrained stand-in's ``history.csv`` and ``standin.json`` (the record every builder returns:
    key, recipe, steps, times, first and last epoch loss, plus ``extra``) and its checksums, last."""
    from medcap_utils.model_files import write_checksums

    result.history.to_csv(folder / "history.csv", index=False)
    history = result.history.to_dict("records")
    info = {"role": role, "key": key, "recipe_hash": recipe["recipe_hash"], "steps": result.global_step,
            "train_time_s": round(result.train_time_s, 1), "build_time_s": round(time.perf_counter() - start, 1),
            "first_epoch_loss": history[0]["train_loss"], "last_epoch_loss": history[-1]["train_loss"], **extra,
            "recipe": {k: v for k, v in recipe.items() if k != "train"}, "train": recipe["train"].to_dict()}
    (folder / INFO).write_text(json.dumps(info, indent=2, default=str))
    write_checksums(folder)
    return info


def build_blip_standin(recipe: dict, retrain: bool = False) -> dict:
    """Pretrain the BLIP captioner stand-in of ``recipe`` (or reuse it); returns its ``standin.json`` record."""
    from medcap_utils.atomic import atomic_directory
    from medcap_utils.models.blip import load_blip
    from medcap_utils.models.blip_standin import build_standin_blip
    from medcap_utils.training.blip import finetune_blip
    from medcap_utils.training.captioning_data import caption_dataset

    out, data, key, reused = prepare(recipe, retrain)
    if reused is not None:
        return reused
    start = time.perf_counter()
    with atomic_directory(out) as tmp:
        built = build_standin_blip(tmp, caption_texts(recipe["vocab_from"]), image_size=recipe["image_size"],
                                   patch_size=recipe["patch_size"], vision_hidden=recipe["vision_hidden"],
                                   vision_layers=recipe["vision_layers"], vision_heads=recipe["vision_heads"],
                                   text_layers=recipe["text_layers"], seed=recipe["train"].seed,
                                   label_smoothing=recipe["label_smoothing"])
        model, processor = load_blip(tmp)
        train = caption_dataset(data, "train", recipe["image_size"])
        valid = caption_dataset(data, "valid", recipe["image_size"])
        cfg = recipe["train"].replace(output_dir=None)
        result = finetune_blip(model, processor, train, cfg, valid=None, max_length=recipe["max_length"],
                               label_smoothing=recipe["label_smoothing"], eval_images=0)
        quality = evaluate_standin(model, processor, valid, recipe["decoding"], recipe["eval_images"])
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        return finish(tmp, "blip-captioning-general", recipe, key, result, start, **built,
                      train_images=len(train), **quality)


def _builder(role: str):
    # the other builders read this module's cache rules, so they are imported when asked for
    if role == "resnet-classifier-general":
        from medcap_utils.training.standin_resnet import build_resnet_standin

        return build_resnet_standin
    if role == "vit-gpt2-captioning-general":
        from medcap_utils.training.standin_vit_gpt2 import build_vit_gpt2_standin

        return build_vit_gpt2_standin
    return build_blip_standin


def build_standins(only: str | None = None, recipe_path: str | Path = RECIPE, retrain: bool = False) -> dict:
    """Every stand-in role (or ``only`` one): ``{role: standin.json record}``; notebook 00 calls it."""
    roles = [only] if only else list(ROLES)
    return {role: _builder(role)(standin_recipe(role, recipe_path), retrain=retrain) for role in roles}


def summary_line(role: str, info: dict) -> str:
    if role == "resnet-classifier-general":
        from medcap_utils.training.standin_resnet import summary_line as resnet_line

        return resnet_line(info)
    return (f"{role}: {info['recipe']['out']} | pretrained {info['steps']} steps in {info['train_time_s']} s "
            f"(built in {info['build_time_s']} s) | loss {info['first_epoch_loss']:.3f} -> "
            f"{info['last_epoch_loss']:.3f}"
            f" | general valid: BLEU-4 {info['valid_bleu4']}, {info['valid_distinct_captions']} distinct captions / "
            f"{info['valid_images']} images, {info['valid_exact_match']} exact")


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    ap = argparse.ArgumentParser(prog=prog or "python -m medcap_utils.training.standins",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--only", choices=ROLES, help="build one role only")
    ap.add_argument("--recipe", default=RECIPE)
    ap.add_argument("--retrain", action="store_true", help="pretrain again even when the folder is up to date")
    args = ap.parse_args(argv)
    from medcap_utils.training.recipe import RecipeError

    try:
        infos = build_standins(args.only, args.recipe, args.retrain)
    except (RecipeError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for role, info in infos.items():
        print(summary_line(role, info))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
