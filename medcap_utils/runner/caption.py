"""Caption images with a trained BLIP: one caption per image, from the shell or from Python.

    python -m medcap_utils.runner.caption --model reports/models/blip_demo [--num-beams 3] IMAGE...
    python -m medcap_utils.runner.caption --model Salesforce/blip-image-captioning-base --data-dir DIR \
        --split test --run-name blip_base_test      # ImageCLEF run dir under reports/runs/

Images are decoded to RGB, resized to the model's input size exactly as the training cache does
(bicubic, square) and normalised with the processor's mean/std. Used by notebook 02 and by users.

Exit status: 0 done; 2 a user's input mistake (a missing or corrupt model, an image file that is missing,
not a regular file or not decodable, a dataset CSV that ``python -m medcap_utils.data check`` would
fail), printed as one line on stderr; 1 a full disk.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from medcap_utils.decoding.config import DecodingConfig

DEFAULT_DECODING = DecodingConfig(num_beams=1, max_new_tokens=40, no_repeat_ngram_size=3)  # seed 000's setting


def _load(model):
    from medcap_utils.models.blip import load_blip

    return load_blip(model) if isinstance(model, (str, Path)) else model


def load_images(paths: Sequence[str | Path], size: int) -> np.ndarray:
    """uint8 ``(N, size, size, 3)`` from image files, resized like the training cache."""
    from medcap_utils.data.cache import resize_square
    from medcap_utils.data.images import open_rgb

    return np.stack([resize_square(open_rgb(p), size) for p in paths]) if paths else np.zeros((0, size, size, 3),
                                                                                              np.uint8)


def caption_images(model, images: Sequence[str | Path], config: DecodingConfig = DEFAULT_DECODING,
                   batch_size: int = 32, device=None) -> list[str]:
    """One caption per image file. ``model`` is a directory / hub id or a ``(model, processor)`` pair."""
    from medcap_utils.decoding.caption import caption
    from medcap_utils.models.blip import image_size_of

    model, processor = _load(model)
    if device is not None:
        model.to(device)
    pixels = load_images(images, image_size_of(processor))
    return caption(model, pixels, config, batch_size=batch_size, processor=processor)


def caption_split_to_run_dir(model, data_dir: str | Path, split: str, run_name: str,
                             config: DecodingConfig = DEFAULT_DECODING, batch_size: int = 32, limit=None,
                             meta: dict | None = None, runs_root=None) -> Path:
    """Caption every image of a dataset split and write an ImageCLEF run directory; returns its path."""
    import time

    from medcap_utils.data.rocov2 import split_frame
    from medcap_utils.decoding.caption import caption
    from medcap_utils.evaluation.runfiles import write_run_dir
    from medcap_utils.models.blip import image_size_of
    from medcap_utils.paths import resolve
    from medcap_utils.training.captioning_data import caption_dataset

    model_ref = str(model) if isinstance(model, (str, Path)) else getattr(model[0], "name_or_path", "")
    frame = split_frame(resolve(data_dir), split)  # a bad CSV fails before minutes of model loading
    model, processor = _load(model)
    data = caption_dataset(resolve(data_dir), split, image_size_of(processor), limit=limit, frame=frame)
    start = time.perf_counter()
    captions = caption(model, data.images(), config, batch_size=batch_size, processor=processor)
    seconds = time.perf_counter() - start
    info = {"model": model_ref, "num_beams": config.num_beams, "max_new_tokens": config.max_new_tokens,
            "no_repeat_ngram_size": config.no_repeat_ngram_size, **config.changed(),
            "captions_per_s": len(captions) / max(seconds, 1e-9), **(meta or {})}
    return write_run_dir(run_name, "captions", split, str(data_dir), dict(zip(data.ids, captions)), meta=info,
                         runs_root=runs_root)


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    ap = argparse.ArgumentParser(prog=prog or "python -m medcap_utils.runner.caption",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="save_pretrained directory or hub id")
    ap.add_argument("--num-beams", type=int, default=DEFAULT_DECODING.num_beams)
    ap.add_argument("--max-new-tokens", type=int, default=DEFAULT_DECODING.max_new_tokens)
    ap.add_argument("--no-repeat-ngram-size", type=int, default=DEFAULT_DECODING.no_repeat_ngram_size)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--data-dir", help="caption a whole ROCOv2-layout split instead of IMAGE files")
    ap.add_argument("--split", default="test")
    ap.add_argument("--run-name", help="reports/runs/<name> for --data-dir runs (default: <model>_<split>)")
    ap.add_argument("--runs-root", help="folder for run directories (default reports/runs)")
    ap.add_argument("images", nargs="*", help="image files")
    args = ap.parse_args(argv)
    kw = dict(config=DecodingConfig(num_beams=args.num_beams, max_new_tokens=args.max_new_tokens,
                                    no_repeat_ngram_size=args.no_repeat_ngram_size), batch_size=args.batch_size)
    from medcap_utils.atomic import DiskFullError
    from medcap_utils.data.images import ImageDecodeError
    from medcap_utils.data.rocov2 import MalformedCSVError
    from medcap_utils.hub import HubModelError

    try:
        return _run(args, ap, kw)
    except DiskFullError as err:  # not the user's input: the image cache or run folder does not fit
        print(f"error: {err}", file=sys.stderr)
        return 1
    except (HubModelError, MalformedCSVError, ImageDecodeError, FileNotFoundError) as err:
        # a user's missing or corrupt checkpoint, dataset CSV or image: one line with the fix, no traceback
        print(f"error: {err}", file=sys.stderr)
        return 2


def _run(args, ap, kw) -> int:
    if args.data_dir:
        name = args.run_name or f"{Path(args.model).name}_{args.split}"
        print(caption_split_to_run_dir(args.model, args.data_dir, args.split, name, runs_root=args.runs_root, **kw))
        return 0
    if not args.images:
        ap.error("give IMAGE files or --data-dir")
    from medcap_utils.data.files import regular_file_problem
    from medcap_utils.data.images import ImageDecodeError

    for path in args.images:  # before loading the model; a FIFO is never opened (that would block)
        problem = regular_file_problem(path)
        if problem:
            raise ImageDecodeError(str(path), problem)
    for caption in caption_images(args.model, args.images, **kw):
        print(caption)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
