"""Sanity checks that are checks: each one measures, prints its numbers and raises when they are wrong.

Used by notebook 02 (the overfit check on 8 captions, the de-normalised batch, the initial loss) and by the
other notebooks' printed checks through :func:`require`. A failing check raises :class:`SanityCheckError`
(an ``AssertionError``) whose message carries the numbers, so papermill and nbval stop at that cell.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field


class SanityCheckError(AssertionError):
    """A sanity check failed; the message says which and with what numbers."""


def require(condition: bool, message: str) -> None:
    """Raise :class:`SanityCheckError` with ``message`` (which should hold the numbers) unless ``condition``."""
    if not condition:
        raise SanityCheckError(message)


def same_caption(a: str, b: str) -> bool:
    """Equal up to case and spaces (the tokenizer decodes ``(white arrow).`` as ``( white arrow ).``)."""
    return a.lower().replace(" ", "") == b.lower().replace(" ", "")


@dataclass
class OverfitResult:
    """What :func:`overfit_check` measured."""

    first_loss: float
    final_loss: float
    reproduced: int
    n: int
    steps: int
    lr: float
    seconds: float
    max_loss: float
    min_reproduced: int
    captions: list[str] = field(default_factory=list)
    references: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.final_loss < self.max_loss and self.reproduced >= self.min_reproduced

    def summary(self) -> str:
        return (f"overfit {self.n} captions, {self.steps} steps at lr {self.lr:g} in {self.seconds:.1f} s: "
                f"loss {self.first_loss:.3f} -> {self.final_loss:.4f} (must be < {self.max_loss:g}); "
                f"reproduced {self.reproduced}/{self.n} exactly (must be >= {self.min_reproduced})")


def no_dropout(model) -> None:
    """Set every dropout of ``model`` to 0 (``nn.Dropout`` modules and the config's dropout fields)."""
    import torch

    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
        for name in ("dropout", "attention_dropout"):  # modules that read a float rather than nn.Dropout
            if isinstance(getattr(m, name, None), float):
                setattr(m, name, 0.0)


def overfit_check(model, processor, dataset, base_cfg=None, n: int = 8, steps: int = 60, lr: float = 3e-3,
                  max_length: int = 40, max_loss: float = 0.1, min_reproduced: int | None = None,
                  raise_on_fail: bool = True) -> OverfitResult:
    """Train ``model`` (in place) on the first ``n`` items of ``dataset`` for ``steps`` full-batch optimiser
    steps (AdamW at constant ``lr``, no dropout, no weight decay, no label smoothing), then caption the same
    ``n`` images greedily. Passes when the final training loss is below ``max_loss`` and at least
    ``min_reproduced`` (default ``n - 1``) captions come back exactly (up to case and spaces) as they were
    trained, i.e. cut to ``max_length`` tokens as the targets are; otherwise
    raises :class:`SanityCheckError` with the numbers (``raise_on_fail=False``: only returns them).

    ``dataset``: a :class:`~medcap_utils.training.captioning_data.CaptionImageCacheDataset` or anything with
    ``__getitem__`` items ``{"image", "caption", "row", "id"}``, ``captions`` and ``images(indices)``.
    ``base_cfg``: a :class:`~medcap_utils.training.TrainConfig` to start from (the recipe's; mixed precision
    and seed are kept), else the defaults."""
    import contextlib
    import io

    import torch

    from medcap_utils.decoding.caption import caption
    from medcap_utils.decoding.config import DecodingConfig
    from medcap_utils.models.blip import caption_targets
    from medcap_utils.training import TrainConfig
    from medcap_utils.training.blip import finetune_blip

    min_reproduced = n - 1 if min_reproduced is None else min_reproduced
    idx = list(range(min(n, len(dataset))))
    n = len(idx)
    subset = torch.utils.data.Subset(dataset, idx)
    subset.captions = [dataset.captions[i] for i in idx]
    cfg = (base_cfg or TrainConfig()).replace(
        epochs=steps, batch_size=n, grad_accum=1, lr=lr, scheduler="none", warmup_steps=0, weight_decay=0.0,
        output_dir=None, progress=False, log_every=steps, max_steps=None, early_stopping_patience=None,
        gradient_checkpointing=False, max_grad_norm=None)
    no_dropout(model)
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # fit prints a line per epoch, here one per step
        hist = finetune_blip(model, processor, subset, cfg, label_smoothing=0.0, max_length=max_length).history
    images = dataset.images(idx)
    again = caption(model, images, DecodingConfig(num_beams=1, max_new_tokens=max_length), processor=processor)
    seconds = time.perf_counter() - t0
    # the references as trained: the target tokens (a caption longer than max_length is cut), decoded
    tok = processor.tokenizer
    targets = caption_targets(tok, subset.captions, model.config.text_config.bos_token_id, max_length)["labels"]
    refs = [tok.decode([t for t in row.tolist() if t != -100], skip_special_tokens=True).strip() for row in targets]
    result = OverfitResult(first_loss=float(hist.train_loss.iloc[0]), final_loss=float(hist.train_loss.iloc[-1]),
                           reproduced=sum(same_caption(a, b) for a, b in zip(again, refs)), n=n, steps=steps, lr=lr,
                           seconds=seconds, max_loss=max_loss, min_reproduced=min_reproduced,
                           captions=again, references=refs)
    if raise_on_fail and not result.passed:
        wrong = next(((a, b) for a, b in zip(again, refs) if not same_caption(a, b)), None)
        raise SanityCheckError("the overfit check failed, so the training loop or the loss cannot fit 8 captions: "
                               + result.summary() + (f"; e.g. wrote {wrong[0]!r} for {wrong[1]!r}" if wrong else ""))
    return result
