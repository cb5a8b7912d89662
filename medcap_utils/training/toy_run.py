"""A tiny, fast training run used by tests/test_training.py to check multi-process and resume behaviour.

``python -m medcap_utils.training.toy_run --out DIR [--kill-at-step N]`` or
``accelerate launch --num_processes 2 --cpu medcap_utils/training/toy_run.py --out DIR``.
Each process writes ``DIR/weights_rank{i}.pt`` (the final state dict) and ``DIR/history.csv``.
The model has dropout so that a resume is only exact if RNG states are restored too.
"""
from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import TensorDataset

from medcap_utils.training import TrainConfig, fit


def toy_data(n_train: int = 96, n_valid: int = 32, seed: int = 123) -> tuple[TensorDataset, TensorDataset]:
    """Train and validation halves of one noisy linear regression problem (fixed generator)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_train + n_valid, 8, generator=g)
    y = x @ torch.randn(8, 1, generator=g) + 0.1 * torch.randn(n_train + n_valid, 1, generator=g)
    return TensorDataset(x[:n_train], y[:n_train]), TensorDataset(x[n_train:], y[n_train:])


def toy_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 1))


def mse_loss(model: nn.Module, batch) -> torch.Tensor:
    x, y = batch
    return nn.functional.mse_loss(model(x), y)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--grad-accum", type=int, default=2)
    ap.add_argument("--ckpt-every", type=int, default=None)
    ap.add_argument("--kill-at-step", type=int, default=None, help="SIGKILL this process after that step")
    ap.add_argument("--scheduler", default="cosine")
    args = ap.parse_args(argv)

    out = Path(args.out)
    cfg = TrainConfig(epochs=args.epochs, lr=3e-2, weight_decay=0.01, scheduler=args.scheduler, warmup_steps=2,
                      batch_size=args.batch_size, grad_accum=args.grad_accum, max_grad_norm=1.0, seed=0,
                      checkpoint_every_steps=args.ckpt_every, output_dir=str(out), log_every=1, progress=False)

    def kill(step: int) -> None:
        if args.kill_at_step is not None and step == args.kill_at_step:
            os.kill(os.getpid(), signal.SIGKILL)  # no clean-up at all, like a pre-empted job

    model = toy_model()
    train, valid = toy_data()
    result = fit(model, train, cfg, mse_loss, valid_dataset=valid, on_step=kill)
    rank = int(os.environ.get("RANK", "0"))
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, out / f"weights_rank{rank}.pt")
    if rank == 0:
        result.history.to_csv(out / "history.csv", index=False)


if __name__ == "__main__":
    main()
