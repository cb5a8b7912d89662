"""The one description of how a caption is decoded: :class:`DecodingConfig`, and which engine implements what.

Every captioning path of the repository takes a ``DecodingConfig`` (notebooks 02-04 and 06-07, the caption
command, per-epoch validation in training, the recipes' ``decoding:`` sections). Three engines decode:

* ``"fast"``: BLIP's own greedy/beam decoder (:mod:`medcap_utils.decoding.blip_fast`), token-identical to
  ``generate`` for the options it implements;
* ``"generate"``: Hugging Face ``generate`` (BLIP when asked for, BLIP-2, InstructBLIP, ViT-GPT2, MSMedCap's
  language model); it receives every field of the config as a keyword argument of the same name;
* ``"lstm"``: the attention LSTM's greedy/beam search (:meth:`LSTMCaptioner.greedy` / ``beam_search``).

Adding an option (say nucleus sampling, ``top_p: float = 1.0``) is a new field here with its ``generate``
default and its one-line comment: ``generate`` receives it with no other edit, and ``fast`` and ``lstm`` refuse
a non-default value by name (:meth:`DecodingConfig.check_engine`) until someone implements it there and lists it
in :data:`ENGINE_OPTIONS` (tests/test_decoding_config.py checks both).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping


class UnsupportedDecoding(ValueError):
    """An option the chosen engine does not implement (the message names the option, its value and the engine)."""


@dataclass(frozen=True)
class DecodingConfig:
    """How to decode a caption. Every default is ``generate``'s own, so an option left unset changes nothing,
    except ``max_new_tokens``, whose default is the repository's caption cap (``generate`` alone stops at 20)."""

    num_beams: int = 1  # 1 = greedy; >1 = beam search with that many beams (seed 000's grid: 3, 4, 5, 10)
    max_new_tokens: int = 40  # generated tokens at most (ROCOv2 captions: median 16 words; the LSTM's max_len)
    min_new_tokens: int = 0  # the end token is forbidden before this many tokens (MSMedCap's code: 10)
    no_repeat_ngram_size: int = 0  # n > 0 forbids repeating any n-gram (seed 000: 3; UIT-Oggy's code: 2)
    length_penalty: float = 1.0  # beam hypotheses are ranked by score / length ** this (MSMedCap's code: 1.2)
    repetition_penalty: float = 1.0  # CTRL-style penalty on tokens already generated (MSMedCap's authors: 9.0)
    do_sample: bool = False  # sampling instead of search; every run of the repository decodes deterministically
    top_p: float = 1.0  # nucleus sampling (with do_sample): draw from the fewest tokens holding this much probability

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value, tp = getattr(self, f.name), _TYPES[f.name]
            ok = isinstance(value, tp) and not (tp is not bool and isinstance(value, bool))
            if tp is float and isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, f.name, float(value))
                ok = True
            if not ok:
                raise ValueError(f"DecodingConfig.{f.name}: expected {tp.__name__}, found {value!r}")
        problems = [text for bad, text in (
            (self.num_beams < 1, f"num_beams must be >= 1 (1 = greedy), not {self.num_beams}"),
            (self.max_new_tokens < 1, f"max_new_tokens must be >= 1, not {self.max_new_tokens}"),
            (not 0 <= self.min_new_tokens <= self.max_new_tokens,
             f"min_new_tokens must be in [0, max_new_tokens={self.max_new_tokens}], not {self.min_new_tokens}"),
            (self.no_repeat_ngram_size < 0, f"no_repeat_ngram_size must be >= 0, not {self.no_repeat_ngram_size}"),
            (not math.isfinite(self.length_penalty), f"length_penalty must be finite, not {self.length_penalty}"),
            (not (math.isfinite(self.repetition_penalty) and self.repetition_penalty > 0),
             f"repetition_penalty must be > 0 (1.0 = none), not {self.repetition_penalty}"),
            (not 0 < self.top_p <= 1, f"top_p must be in (0, 1] (1.0 = no nucleus), not {self.top_p}"),
        ) if bad]
        if problems:
            raise ValueError("DecodingConfig: " + "; ".join(problems))

    # ------------------------------------------------------------------------------------------ building

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None, where: str = "decoding") -> "DecodingConfig":
        """A config from a recipe's ``decoding:`` mapping (or keyword arguments); unknown keys are refused
        with the known ones listed (``beam_size`` and ``max_len`` are named as the old spellings they are)."""
        mapping = dict(mapping or {})
        unknown = sorted(set(mapping) - set(option_names()))
        if unknown:
            hints = [f"{k!r} is now {OLD_NAMES[k]!r}" for k in unknown if k in OLD_NAMES]
            raise ValueError(f"{where}: unknown decoding option(s) {unknown}; DecodingConfig options are "
                             f"{list(option_names())}" + (f" ({'; '.join(hints)})" if hints else ""))
        return cls(**mapping)

    def replace(self, **changes) -> "DecodingConfig":
        """A copy with ``changes`` (checked like :meth:`from_mapping`)."""
        return self.from_mapping({**self.to_dict(), **changes})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def changed(self) -> dict[str, Any]:
        """The options that differ from their defaults."""
        return {k: v for k, v in self.to_dict().items() if v != _DEFAULTS[k]}

    # ----------------------------------------------------------------------------------------- engines

    def generate_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for Hugging Face ``generate``: every field under its own name."""
        return self.to_dict()

    def check_engine(self, engine: str) -> "DecodingConfig":
        """``self`` when ``engine`` implements every option set away from its default; otherwise
        :class:`UnsupportedDecoding` naming the options and the engine (no engine is ever switched silently)."""
        if engine not in ENGINE_OPTIONS:
            raise ValueError(f"unknown decoding engine {engine!r}; engines are {sorted(ENGINE_OPTIONS)}")
        supported = ENGINE_OPTIONS[engine]
        if supported is ALL:
            return self
        missing = {k: v for k, v in self.changed().items() if k not in supported}
        if missing:
            hint = " (use engine='generate')" if engine == "fast" else ""
            raise UnsupportedDecoding(f"the {engine!r} decoding engine does not implement "
                                      + ", ".join(f"{k}={v!r}" for k, v in missing.items()) + hint)
        return self


ALL = "all"
#: Which options each engine implements; any other option must stay at its default there.
ENGINE_OPTIONS: dict[str, Any] = {
    "fast": frozenset({"num_beams", "max_new_tokens", "no_repeat_ngram_size", "length_penalty"}),
    "generate": ALL,
    "lstm": frozenset({"num_beams", "max_new_tokens"}),  # ranks beams by the plain log-probability sum
}
#: Spellings the recipes used before the one ``decoding:`` section (xai-lstm-2021's ``decode:``).
OLD_NAMES = {"beam_size": "num_beams", "max_len": "max_new_tokens"}

_DEFAULTS = {f.name: f.default for f in dataclasses.fields(DecodingConfig)}
_TYPES = {f.name: {"int": int, "float": float, "bool": bool}[f.type] for f in dataclasses.fields(DecodingConfig)}


def option_names() -> tuple[str, ...]:
    """The options in declaration order."""
    return tuple(_DEFAULTS)


def as_config(config: "DecodingConfig | Mapping[str, Any] | None") -> DecodingConfig:
    """``config`` as a :class:`DecodingConfig` (a mapping goes through :meth:`DecodingConfig.from_mapping`)."""
    return config if isinstance(config, DecodingConfig) else DecodingConfig.from_mapping(config)
