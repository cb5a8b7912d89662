"""One Hugging Face Accelerate training loop for every model in the repository.

Used by notebooks 02 (BLIP), 03 (MedBLIP ablation, ViT-GPT2), 05 (MedCSRA), 06 (MSMedCap) and 07
(CNN-LSTM captioner). The same call runs on one CPU, one GPU, or several processes started with
``accelerate launch``: Accelerate wraps the model (DDP), shards the batches and handles mixed precision
and gradient accumulation; this module adds schedules, validation, early stopping and checkpoints that
resume bit-exactly after a kill.
"""
from __future__ import annotations

import math
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..atomic import atomic_directory, atomic_write_json, disk_full_as_error
from ..device import current_device, resolve_mixed_precision
from ..model_files import write_checksums
from ..progress import tqdm
from .config import TrainConfig, TrainResult
from .optim import build_optimizer, enable_gradient_checkpointing, lr_factor
from .resume import check_resume, complete_checkpoints

LossFn = Callable[[torch.nn.Module, Any], torch.Tensor]
EvalFn = Callable[[torch.nn.Module, int], dict]


class EpochShuffleSampler(Sampler[int]):
    """A permutation drawn from ``(seed, epoch)`` only, so every process and every resumed run sees
    the same order (no global RNG involved)."""

    def __init__(self, n: int, seed: int, shuffle: bool = True):
        self.n, self.seed, self.shuffle, self.epoch = n, seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            return iter(range(self.n))
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


class _LoopState:
    """Counters that must survive a kill; saved with Accelerate's checkpoint of model/optimiser/RNG."""

    def __init__(self) -> None:
        self.epoch = 0  # current (0-based) epoch
        self.batches_done = 0  # micro-batches of the current epoch already trained
        self.global_step = 0  # optimiser steps so far
        self.loss_sum = 0.0  # over the current epoch's micro-batches, this process
        self.loss_count = 0
        self.epoch_seconds = 0.0  # time spent in the current epoch before the checkpoint
        self.history: list[dict] = []
        self.step_losses: list[float] = []  # mean micro-batch loss of each optimiser step, this process
        self.best: dict = {}
        self.bad_epochs = 0
        self.stopped_early = False

    def state_dict(self) -> dict:
        return dict(self.__dict__)

    def load_state_dict(self, state: dict) -> None:
        self.__dict__.update(state)


def move_to(batch: Any, device: torch.device) -> Any:
    """Tensors in nested dicts/lists/tuples moved to ``device`` (non-blocking)."""
    if torch.is_tensor(batch):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: move_to(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to(v, device) for v in batch)
    return batch


@torch.no_grad()
def mean_loss(model: torch.nn.Module, loader: Iterable, loss_fn: LossFn, device: torch.device,
              autocast: Callable = torch.autocast) -> float:
    """Average of ``loss_fn`` over a loader, weighted by batch size (validation loss)."""
    was_training = model.training
    model.eval()
    total, count = torch.zeros((), dtype=torch.float64, device=device), 0
    for batch in loader:
        batch = move_to(batch, device)
        n = _batch_size(batch)
        with autocast():
            total += loss_fn(model, batch).detach().double() * n
        count += n
    model.train(was_training)
    return float(total.item() / max(count, 1))


def _batch_size(batch: Any) -> int:
    if torch.is_tensor(batch):
        return batch.shape[0]
    if isinstance(batch, dict):
        return _batch_size(next(iter(batch.values())))
    if isinstance(batch, (list, tuple)):
        return _batch_size(batch[0])
    return 1


def _improved(value: float, best: float | None, mode: str) -> bool:
    return best is None or (value < best if mode == "min" else value > best)


def fit(
    model: torch.nn.Module,
    train_dataset: Dataset,
    cfg: TrainConfig,
    loss_fn: LossFn,
    collate_fn: Callable | None = None,
    valid_dataset: Dataset | None = None,
    evaluate_fn: EvalFn | None = None,
    trainable_params: Iterable[torch.nn.Parameter] | None = None,
    on_step: Callable[[int], None] | None = None,
    sampler: Sampler[int] | None = None,
) -> TrainResult:
    """Train ``model`` in place and return the per-epoch history.

    ``loss_fn(model, batch)`` returns the scalar loss of a batch already on the device.
    ``evaluate_fn(model, epoch)`` (main process only, unwrapped model, eval mode) returns extra metrics,
    e.g. BLEU-4 of generated validation captions; its dict is merged into the history row.
    With ``valid_dataset`` the validation loss is logged as ``val_loss``. ``on_step(global_step)`` runs
    after each optimiser step (tests use it to kill the process; the benchmark to time steps). ``sampler``
    replaces the seeded per-epoch shuffle (it must also depend on ``(seed, epoch)`` only and have
    ``set_epoch``), e.g. :class:`~medcap_utils.models.blip_fast.LengthGroupedSampler`. Resumes from the newest
    checkpoint
    in ``cfg.output_dir/checkpoints`` when ``cfg.resume``.
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import broadcast_object_list, set_seed

    t_call = time.perf_counter()
    # Accelerate keeps its settings in a process-wide singleton that refuses a second mixed-precision setting;
    # each fit call is its own run (a notebook may train in fp32, then in bf16), so that part is reset here.
    # The process group (PartialState) is kept.
    AcceleratorState._reset_state(reset_partial_state=False)
    cuda = torch.cuda.is_available()
    # "auto" and requests the device cannot honour (bf16 below compute capability 8.0, anything on a CPU) are
    # resolved here, once, for this process's device; Accelerate then adds the GradScaler for fp16 itself.
    precision = resolve_mixed_precision(cfg.mixed_precision, current_device(), verbose=False,
                                        allow_cpu_autocast=cfg.allow_cpu_autocast)
    accelerator = Accelerator(
        mixed_precision=precision.value,
        gradient_accumulation_steps=cfg.grad_accum,
        cpu=not cuda,
    )
    if precision.changed:
        accelerator.print(precision.reason)
    set_seed(cfg.seed)
    out = Path(cfg.output_dir) if cfg.output_dir else None
    ckpt_root = out / "checkpoints" if out else None

    params = list(trainable_params) if trainable_params is not None else list(model.parameters())
    half = sorted({str(p.dtype) for p in params if p.requires_grad and p.dtype != torch.float32})
    if half:  # AdamW on 16-bit weights loses small updates; mixed precision means fp32 weights + autocast
        raise ValueError(f"trainable parameters in {half}: load the model in float32 for training; "
                         f"mixed_precision={cfg.mixed_precision!r} runs the 16-bit parts through autocast")
    if cfg.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    model.to(accelerator.device)  # before the optimiser, so a GPU run gets the fused kernel
    optimizer = build_optimizer(params, cfg, fused=accelerator.device.type == "cuda")
    sampler = sampler if sampler is not None else EpochShuffleSampler(len(train_dataset), cfg.seed)
    loader_rng = torch.Generator()
    loader = DataLoader(train_dataset, batch_size=cfg.batch_size, sampler=sampler, collate_fn=collate_fn,
                        num_workers=cfg.num_workers, drop_last=cfg.drop_last, generator=loader_rng,
                        pin_memory=torch.cuda.is_available(), persistent_workers=False)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    batches_per_epoch = len(loader)
    steps_per_epoch = math.ceil(batches_per_epoch / cfg.grad_accum)
    total_steps = steps_per_epoch * cfg.epochs
    if cfg.max_steps is not None:
        total_steps = min(total_steps, cfg.max_steps)
    # Stepped by hand once per optimiser step (not prepared), so the schedule is in this process's
    # optimiser steps whatever the number of processes.
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer.optimizer if hasattr(optimizer, "optimizer") else optimizer,
        lambda s: lr_factor(s, cfg, steps_per_epoch, total_steps),
    )
    state = _LoopState()
    accelerator.register_for_checkpointing(scheduler, state)

    if ckpt_root and cfg.resume and complete_checkpoints(ckpt_root):
        latest = complete_checkpoints(ckpt_root)[-1]
        check_resume(latest, cfg)
        accelerator.load_state(str(latest))
        accelerator.print(f"resumed from {latest} (epoch {state.epoch}, step {state.global_step})")

    valid_loader = None
    if valid_dataset is not None:
        valid_loader = DataLoader(valid_dataset, batch_size=cfg.batch_size, shuffle=False, collate_fn=collate_fn,
                                  num_workers=cfg.num_workers)

    def save_checkpoint() -> None:
        if ckpt_root is None:
            return
        final = ckpt_root / f"step_{state.global_step}"
        tmp = ckpt_root / f"tmp_step_{state.global_step}"
        if accelerator.is_main_process and tmp.exists():
            shutil.rmtree(tmp)
        accelerator.wait_for_everyone()
        try:  # a full disk surfaces from torch's serializer as "unexpected pos": name the path and the space
            with disk_full_as_error(tmp):
                accelerator.save_state(str(tmp), safe_serialization=False)
        except BaseException:
            if accelerator.is_main_process:  # the previous checkpoint stays the newest complete one
                shutil.rmtree(tmp, ignore_errors=True)
            raise
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            # written last: complete_checkpoints() takes a folder with loop_done as complete; the settings are
            # compared with the next run's before it resumes (check_resume)
            atomic_write_json(tmp / "loop_done", {"step": state.global_step, "epoch": state.epoch,
                                                  "config": cfg.to_dict()})
            if final.exists():
                shutil.rmtree(final)
            tmp.rename(final)  # atomic: a kill leaves either no checkpoint or a complete one
            for old in complete_checkpoints(ckpt_root)[: -cfg.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
        accelerator.wait_for_everyone()

    def save_best() -> Path | None:
        if out is None or not accelerator.is_main_process:
            return None
        best_dir = out / "best"
        unwrapped = accelerator.unwrap_model(model)
        with atomic_directory(best_dir) as tmp:  # the previous best stays until this one is complete
            if hasattr(unwrapped, "save_pretrained"):
                unwrapped.save_pretrained(tmp)
            else:
                torch.save(unwrapped.state_dict(), tmp / "model.pt")
            write_checksums(tmp)
        return best_dir

    best_dir = out / "best" if out and (out / "best").exists() else None
    model.train()
    done = state.stopped_early or (cfg.max_steps is not None and state.global_step >= cfg.max_steps)
    while state.epoch < cfg.epochs and not done:
        t_epoch = time.perf_counter() - state.epoch_seconds
        loader.set_epoch(state.epoch)  # Accelerate's loader passes it to our sampler (and keeps count)
        loader_rng.manual_seed(cfg.seed * 7919 + state.epoch)  # worker seeds depend on the epoch only
        epoch_loader = accelerator.skip_first_batches(loader, state.batches_done) if state.batches_done else loader
        running = torch.zeros((), device=accelerator.device)  # loss sum since the last flush
        step_sum, step_micro = torch.zeros((), device=accelerator.device), 0  # this optimiser step's micro-batches
        step_losses: list[torch.Tensor] = []  # per optimiser step, on the device until the next flush

        def flush() -> None:
            state.loss_sum += float(running.item())
            state.loss_count = state.batches_done
            running.zero_()
            if step_losses:  # one transfer for all steps since the last flush
                state.step_losses.extend(torch.stack(step_losses).tolist())
                step_losses.clear()

        bar = tqdm(total=batches_per_epoch, initial=state.batches_done, desc=f"epoch {state.epoch + 1}/{cfg.epochs}",
                   disable=not (cfg.progress and accelerator.is_local_main_process), leave=False)
        for batch in epoch_loader:
            with accelerator.accumulate(model):
                with accelerator.autocast():  # also for loss functions that call submodules, not forward
                    loss = loss_fn(model, batch)
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    if cfg.max_grad_norm is not None:
                        accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
            running += loss.detach().float()
            step_sum += loss.detach().float()
            step_micro += 1
            state.batches_done += 1
            bar.update(1)
            if not accelerator.sync_gradients:
                continue
            step_losses.append(step_sum / step_micro)  # an epoch's last step may have fewer micro-batches
            step_sum, step_micro = torch.zeros_like(step_sum), 0
            state.global_step += 1
            if state.global_step % max(cfg.log_every, 1) == 0:
                flush()  # a host sync, only every log_every steps
                bar.set_postfix(loss=f"{state.loss_sum / max(state.loss_count, 1):.4f}",
                                lr=f"{scheduler.get_last_lr()[0]:.2e}")
            if on_step is not None:
                on_step(state.global_step)
            if cfg.checkpoint_every_steps and state.global_step % cfg.checkpoint_every_steps == 0 \
                    and state.batches_done < batches_per_epoch:
                flush()
                state.epoch_seconds = time.perf_counter() - t_epoch
                save_checkpoint()
            if cfg.max_steps is not None and state.global_step >= cfg.max_steps:
                done = True
                break
        bar.close()
        flush()
        train_loss = float(accelerator.reduce(torch.tensor(state.loss_sum / max(state.loss_count, 1),
                                                            device=accelerator.device), reduction="mean").item())
        row: dict[str, Any] = {"epoch": state.epoch + 1, "step": state.global_step, "train_loss": train_loss,
                               "lr": scheduler.get_last_lr()[0]}
        metrics = [None]
        if accelerator.is_main_process:
            unwrapped = accelerator.unwrap_model(model)
            extra: dict[str, float] = {}
            if valid_loader is not None:
                extra["val_loss"] = mean_loss(unwrapped, valid_loader, loss_fn, accelerator.device,
                                              accelerator.autocast)
            if evaluate_fn is not None:
                unwrapped.eval()
                with torch.no_grad(), accelerator.autocast():
                    extra.update(evaluate_fn(unwrapped, state.epoch + 1))
                unwrapped.train()
            metrics = [extra]
        broadcast_object_list(metrics)  # every process takes the same early-stopping decision
        row.update(metrics[0])
        row["seconds"] = time.perf_counter() - t_epoch
        state.history.append(row)
        if cfg.monitor in row:
            if _improved(row[cfg.monitor], state.best.get(cfg.monitor), cfg.monitor_mode):
                state.best = {"epoch": row["epoch"], "step": row["step"], cfg.monitor: row[cfg.monitor]}
                state.bad_epochs = 0
                best_dir = save_best() or best_dir
            else:
                state.bad_epochs += 1
                if cfg.early_stopping_patience is not None and state.bad_epochs >= cfg.early_stopping_patience:
                    state.stopped_early = True
                    done = True
        accelerator.print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
        state.epoch += 1
        state.batches_done, state.loss_sum, state.loss_count, state.epoch_seconds = 0, 0.0, 0, 0.0
        if ckpt_root is not None:
            save_checkpoint()
    accelerator.wait_for_everyone()
    history = pd.DataFrame(state.history)
    return TrainResult(history=history, best=dict(state.best), wall_time_s=time.perf_counter() - t_call,
                       train_time_s=float(history["seconds"].sum()) if len(history) else 0.0, output_dir=out,
                       global_step=state.global_step, stopped_early=state.stopped_early, best_dir=best_dir,
                       step_losses=list(state.step_losses), mixed_precision=precision.value,
                       precision_reason=precision.reason)
