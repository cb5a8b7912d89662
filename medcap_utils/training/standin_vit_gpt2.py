"""The demo's ViT-GPT2 stand-in (issue 17): ``vit-gpt2-captioning-general``, built by ``medcap standins`` (notebook 00).

Seed 001 compares fine-tuned BLIP with ``nlpconnect/vit-gpt2-image-captioning`` used zero-shot: a ViT encoder and a
GPT-2 decoder joined by cross-attention and trained as a captioner on COCO. The stand-in is a small
``VisionEncoderDecoderModel`` of the same two classes (:func:`medcap_utils.models.vit_gpt2.build_demo_vit_gpt2`) trained
the same way, language modelling on image-caption pairs, on the general synthetic domain (the demo's COCO). Its
tokenizer is trained on the general and the demo captions (``vocab_from``), as GPT-2's vocabulary was built on far
more text than COCO: a zero-shot caption of a medical image can use medical words, but it learned to write only
general ones. Saved with ``save_pretrained`` and loaded by :func:`medcap_utils.models.vit_gpt2.load_vit_gpt2`, as the
hub checkpoint is; cached like the other stand-ins (:mod:`medcap_utils.training.standins`).
"""
from __future__ import annotations

import time

ROLE = "vit-gpt2-captioning-general"


def build_vit_gpt2_standin(recipe: dict, retrain: bool = False) -> dict:
    """Pretrain the ViT-GPT2 stand-in of ``recipe`` (or reuse it); returns its ``standin.json`` record."""
    from medcap_utils.atomic import atomic_directory
    from medcap_utils.models import vit_gpt2
    from medcap_utils.models.causal_tokenizer import train_causal_tokenizer
    from medcap_utils.training import fit
    from medcap_utils.training.captioning_data import caption_dataset
    from medcap_utils.training.standins import caption_texts, evaluate_standin, finish, prepare

    out, data, key, reused = prepare(recipe, retrain)
    if reused is not None:
        return reused
    start = time.perf_counter()
    cfg = recipe["train"]
    with atomic_directory(out) as tmp:
        tokenizer = train_causal_tokenizer(caption_texts(recipe["vocab_from"]), vocab_size=recipe["vocab_size"])
        vit_gpt2.build_demo_vit_gpt2(tmp, tokenizer, image_size=recipe["image_size"], patch_size=recipe["patch_size"],
                                     hidden_size=recipe["hidden_size"], num_layers=recipe["num_layers"],
                                     num_heads=recipe["num_heads"], seed=cfg.seed)
        model, image_processor, tokenizer = vit_gpt2.load_vit_gpt2(tmp)
        train = caption_dataset(data, "train", recipe["image_size"])
        valid = caption_dataset(data, "valid", recipe["image_size"])
        result = fit(model.train(), train, cfg.replace(output_dir=None), vit_gpt2.make_vit_gpt2_loss(image_processor),
                     collate_fn=vit_gpt2.make_vit_gpt2_collate(tokenizer, recipe["max_length"]))
        quality = evaluate_standin(model, image_processor, valid, recipe["decoding"], recipe["eval_images"],
                                   tokenizer=tokenizer)
        model.save_pretrained(tmp)
        return finish(tmp, ROLE, recipe, key, result, start, vocab_size=len(tokenizer),
                      parameters=sum(p.numel() for p in model.parameters()), train_images=len(train), **quality)
