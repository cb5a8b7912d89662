"""Timing that is fair to compare: warm-up calls first (not counted), then every timed call recorded, so a
speed is reported with its median and spread (min-max) instead of one number.

Used by :func:`medcap_utils.decoding.captioners.caption_split_with_speed` (notebook 04's captions per second).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from statistics import median
from typing import Any, Callable, Sequence


@dataclass
class Timing:
    """Seconds and items of each timed call (warm-up calls excluded), in call order."""

    seconds: list[float] = field(default_factory=list)
    items: list[int] = field(default_factory=list)
    warmup_calls: int = 0
    warmup_seconds: float = 0.0

    @property
    def total_seconds(self) -> float:
        return float(sum(self.seconds))

    @property
    def rate(self) -> float:
        """Items per second over all timed calls together."""
        return sum(self.items) / self.total_seconds if self.total_seconds > 0 else float("nan")

    @property
    def rates(self) -> list[float]:
        """Items per second of each timed call."""
        return [n / s if s > 0 else float("nan") for n, s in zip(self.items, self.seconds)]

    def summary(self, prefix: str = "rate") -> dict[str, Any]:
        """``{prefix, prefix_median, prefix_min, prefix_max, timed_calls, warmup_calls, warmup_s}``."""
        r = self.rates
        return {prefix: self.rate, f"{prefix}_median": median(r) if r else float("nan"),
                f"{prefix}_min": min(r) if r else float("nan"), f"{prefix}_max": max(r) if r else float("nan"),
                "timed_calls": len(r), "warmup_calls": self.warmup_calls, "warmup_s": self.warmup_seconds}


def timed_calls(fn: Callable[[Any], Sequence], inputs: Sequence, warmup: int = 1, repeats: int = 1,
                sync: Callable[[], None] | None = None) -> tuple[list, Timing]:
    """Call ``fn`` on each of ``inputs`` ``repeats`` times, after ``warmup`` untimed calls on the first
    inputs (``inputs[:warmup]``), and time every call separately (``sync()`` before each clock read, e.g.
    ``torch.cuda.synchronize``). Returns the outputs of the first pass (one per input) and the
    :class:`Timing`; the items of a call are ``len(fn(x))``."""
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    sync = sync or (lambda: None)
    timing = Timing()
    for x in list(inputs)[:warmup]:
        sync()
        t0 = time.perf_counter()
        fn(x)
        sync()
        timing.warmup_seconds += time.perf_counter() - t0
        timing.warmup_calls += 1
    outputs: list = []
    for rep in range(repeats):
        for x in inputs:
            sync()
            t0 = time.perf_counter()
            out = fn(x)
            sync()
            timing.seconds.append(time.perf_counter() - t0)
            timing.items.append(len(out))
            if rep == 0:
                outputs.append(out)
    return outputs, timing
