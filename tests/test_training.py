"""The generic Accelerate loop (medcap_utils.training): schedules, accumulation, early stopping,
exact resume after SIGKILL, and identical weights across two processes."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from medcap_utils.training import TrainConfig, fit, lr_factor
from medcap_utils.training.toy_run import mse_loss, toy_data, toy_model

REPO = Path(__file__).resolve().parents[1]


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu")


def _run_toy(out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "medcap_utils.training.toy_run", "--out", str(out), *extra],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_step_schedule_decays_every_step_size_epochs():
    cfg = TrainConfig(lr=1e-5, scheduler="step", step_size=3, gamma=0.1, epochs=15)
    steps_per_epoch = 10
    factors = [lr_factor(e * steps_per_epoch, cfg, steps_per_epoch, 150) for e in range(15)]
    assert factors[:3] == [1.0, 1.0, 1.0]
    assert factors[3] == pytest.approx(0.1) and factors[5] == pytest.approx(0.1)
    assert factors[6] == pytest.approx(0.01) and factors[14] == pytest.approx(1e-4)


def test_cosine_with_warmup_starts_low_and_ends_at_floor():
    cfg = TrainConfig(scheduler="cosine", warmup_steps=4, min_lr_ratio=0.1)
    assert lr_factor(0, cfg, 10, 100) == pytest.approx(0.25)
    assert lr_factor(4, cfg, 10, 100) == pytest.approx(1.0)
    assert lr_factor(100, cfg, 10, 100) == pytest.approx(0.1)


def test_unknown_recipe_key_is_an_error(tmp_path):
    (tmp_path / "r.yaml").write_text("model:\n  train:\n    lr: 1.0e-5\n    epochz: 3\n")
    from medcap_utils.training.recipe import RecipeError  # file and dotted key in the message (issue 14)

    with pytest.raises(RecipeError, match=r"r\.yaml: model\.train\.epochz: unknown key"):
        TrainConfig.from_yaml(tmp_path / "r.yaml", "model.train")
    (tmp_path / "r.yaml").write_text("model:\n  train:\n    lr: 1.0e-5\n    betas: [0.9, 0.98]\n")
    cfg = TrainConfig.from_yaml(tmp_path / "r.yaml", "model.train", epochs=4)
    assert cfg.lr == 1e-5 and cfg.betas == (0.9, 0.98) and cfg.epochs == 4


def test_fit_learns_and_records_history(tmp_path):
    train, valid = toy_data()
    model = toy_model()
    cfg = TrainConfig(epochs=4, lr=3e-2, batch_size=16, output_dir=str(tmp_path), progress=False)
    result = fit(model, train, cfg, mse_loss, valid_dataset=valid)
    h = result.history
    assert list(h["epoch"]) == [1, 2, 3, 4]
    assert {"train_loss", "val_loss", "lr", "seconds", "step"} <= set(h.columns)
    assert h["val_loss"].iloc[-1] < 0.5 * h["val_loss"].iloc[0]
    assert h["step"].iloc[-1] == 4 * 6 == result.global_step
    # one loss per optimiser step; each epoch's train_loss is the mean of its (equal-sized) batches' losses
    assert len(result.step_losses) == result.global_step
    per_epoch = np.array(result.step_losses[:-6]).reshape(3, 6).mean(1)
    np.testing.assert_allclose(per_epoch, h["train_loss"].iloc[:3], rtol=1e-5)
    assert result.best["epoch"] == int(h["val_loss"].idxmin()) + 1
    assert (tmp_path / "best" / "model.pt").exists()


def test_gradient_accumulation_matches_a_larger_batch():
    """batch 4 x accumulate 3 must give the same update as batch 12 (mean losses, SGD, no dropout)."""
    train, _ = toy_data(n_train=48)
    weights, curves = [], []
    for batch, accum in [(12, 1), (4, 3)]:
        torch.manual_seed(0)
        model = nn.Linear(8, 1)
        cfg = TrainConfig(epochs=2, lr=0.1, optimizer="sgd", momentum=0.0, batch_size=batch, grad_accum=accum,
                          progress=False)
        curves.append(fit(model, train, cfg, mse_loss).step_losses)
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    torch.testing.assert_close(weights[0], weights[1], rtol=1e-5, atol=1e-6)
    assert len(curves[0]) == len(curves[1]) == 8  # a step's loss is the mean of its micro-batches
    np.testing.assert_allclose(curves[1], curves[0], rtol=1e-5)


def test_freezing_by_trainable_params_leaves_the_rest_unchanged():
    train, _ = toy_data()
    model = toy_model()
    before = model[0].weight.detach().clone()
    for p in model[0].parameters():
        p.requires_grad_(False)
    fit(model, train, TrainConfig(epochs=1, lr=1e-2, progress=False), mse_loss,
        trainable_params=[p for p in model.parameters() if p.requires_grad])
    assert torch.equal(model[0].weight, before)


def test_early_stopping_stops_after_patience_epochs():
    train, _ = toy_data()
    scores = iter([0.5, 0.6, 0.4, 0.3, 0.2, 0.1, 0.0])  # best at epoch 1 for "max", then only worse

    cfg = TrainConfig(epochs=7, lr=1e-3, monitor="score", monitor_mode="max", early_stopping_patience=2,
                      progress=False)
    result = fit(toy_model(), train, cfg, mse_loss, evaluate_fn=lambda model, epoch: {"score": next(scores)})
    assert result.stopped_early
    assert list(result.history["epoch"]) == [1, 2, 3, 4]  # best 0.6 at epoch 2, then 2 worse epochs
    assert result.best["epoch"] == 2 and result.best["score"] == 0.6


@pytest.mark.parametrize("kill_at", [5, 8])  # mid-epoch checkpoint (step 3/epoch 1) and epoch-end one (step 6)
def test_kill_and_resume_is_bit_identical(tmp_path, kill_at):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert _run_toy(straight, "--ckpt-every", "3").returncode == 0
    killed = _run_toy(resumed, "--ckpt-every", "3", "--kill-at-step", str(kill_at))
    assert killed.returncode != 0 and not (resumed / "weights_rank0.pt").exists()  # really killed
    again = _run_toy(resumed, "--ckpt-every", "3")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resumed from" in again.stdout + again.stderr
    a, b = _weights(straight / "weights_rank0.pt"), _weights(resumed / "weights_rank0.pt")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.slow
def test_two_processes_end_with_identical_weights(tmp_path):
    """`accelerate launch` with 2 processes on CPU (torchrun + gloo). accelerate 1.15 launches several
    CPU processes with `--cpu` only through mpirun, so `--multi_gpu` is used; with no GPU it runs on CPU."""
    if shutil.which("accelerate") is None and not (Path(sys.executable).parent / "accelerate").exists():
        pytest.skip("accelerate CLI not installed")
    launcher = str(Path(sys.executable).parent / "accelerate")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    if torch.cuda.is_available():
        env["CUDA_VISIBLE_DEVICES"] = ""
    cmd = [launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29517",
           str(REPO / "medcap_utils" / "training" / "toy_run.py"), "--out", str(tmp_path), "--epochs", "2"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    w0, w1 = _weights(tmp_path / "weights_rank0.pt"), _weights(tmp_path / "weights_rank1.pt")
    for k in w0:
        assert torch.equal(w0[k], w1[k]), k
    import pandas as pd

    # 96 samples / (8 per process x 2 processes) / accumulate 2 = 3 optimiser steps per epoch
    assert pd.read_csv(tmp_path / "history.csv")["step"].tolist() == [3, 6]
    single = tmp_path / "single"
    assert _run_toy(single, "--epochs", "2").returncode == 0
    assert not torch.equal(_weights(single / "weights_rank0.pt")["0.weight"], w0["0.weight"])  # really 2 shards
