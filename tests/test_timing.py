"""Fair timing (medcap_utils.timing, used by notebook 04 through decoding.caption_split_with_speed): warm-up calls are
run but not counted, every timed call is recorded, and the spread is reported beside the median."""
from __future__ import annotations

import time

import numpy as np
import pytest

from medcap_utils.timing import timed_calls


def test_warmup_call_is_not_counted_and_repeats_are_recorded():
    calls = []

    def fn(x):
        calls.append(x)
        time.sleep(0.3 if len(calls) == 1 else 0.01)  # the first call is slow, as a cold one is
        return [x] * 4

    outs, t = timed_calls(fn, [1, 2], warmup=1, repeats=3)
    assert calls == [1, 1, 2, 1, 2, 1, 2]  # one warm-up call, then 3 passes over both inputs
    assert outs == [[1] * 4, [2] * 4]  # outputs of the first pass only
    assert t.warmup_calls == 1 and t.warmup_seconds >= 0.3
    assert len(t.seconds) == 6 and max(t.seconds) < 0.2  # the slow cold call is not among the timed ones
    s = t.summary("captions_per_s")
    assert s["timed_calls"] == 6 and s["captions_per_s_min"] <= s["captions_per_s_median"] <= s["captions_per_s_max"]
    assert s["captions_per_s"] == pytest.approx(24 / t.total_seconds)


def test_without_warmup_the_cold_call_is_timed():
    calls = []

    def fn(x):
        calls.append(x)
        time.sleep(0.3 if len(calls) == 1 else 0.01)
        return [x]

    _, t = timed_calls(fn, [1, 2], warmup=0)
    assert t.warmup_calls == 0 and max(t.seconds) >= 0.3


def test_caption_split_warms_up_and_reports_the_spread():
    from types import SimpleNamespace

    import torch

    from medcap_utils.decoding.captioners import caption_split_with_speed

    seen = []

    def caption(images, config=None):
        seen.append(len(images))
        return [f"c{len(seen)}"] * len(images)

    captioner = SimpleNamespace(caption=caption, model=torch.nn.Linear(1, 1), device=torch.device("cpu"))
    images = np.zeros((5, 8, 8, 3), dtype=np.uint8)
    preds, speed = caption_split_with_speed(captioner, images, list("abcde"), batch_size=2, warmup=1, repeats=2)
    assert seen == [2, 2, 2, 1, 2, 2, 1]  # warm-up batch, then the split twice
    assert preds == {"a": "c2", "b": "c2", "c": "c3", "d": "c3", "e": "c4"}  # captions from the first timed pass
    assert speed["timed_calls"] == 6 and speed["warmup_calls"] == 1 and speed["repeats"] == 2
    assert speed["captions_per_s_min"] <= speed["captions_per_s_median"] <= speed["captions_per_s_max"]
