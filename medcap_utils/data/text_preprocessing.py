"""Caption preprocessing of the explainable attention-LSTM captioner (seed 004) and its BLEU.

Used by notebook 07_explainable_lstm_captioner. The paper (Sec. III) tokenises, removes stop words,
lower-cases and stems captions "using NLTK", then adds ``<start>``/``<end>``. Everything here works
offline: NLTK's stop-word corpus would need a download, so an English stop-word list is shipped as a
constant (written for this project; it covers the same function words as NLTK's list, including
"no"/"not"/"nor", which the paper's NLTK list also removes), and stemming uses NLTK's Porter stemmer,
which is pure code. ``stem=False`` keeps whole words so a model's outputs stay readable.

``imageclef_bleu`` is BLEU "as the paper computed it": NLTK ``sentence_bleu`` per image, each
caption one sentence, averaged over images -- the ImageCLEFmed 2018-2021 caption-prediction protocol
(lower-case, punctuation removed, stop words removed, Snowball stemming, BLEU-4 weights, no
smoothing, an image whose ground truth and candidate are both empty scores 1).
"""
from __future__ import annotations

import string
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from nltk.stem import PorterStemmer
from nltk.stem.snowball import SnowballStemmer
from nltk.tokenize import RegexpTokenizer
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

PAD, START, END, UNK = "<pad>", "<start>", "<end>", "<unk>"
SPECIAL_TOKENS = (PAD, START, END, UNK)

# English function words removed before training (and by the BLEU protocol). Lower case; apostrophe
# fragments ("don", "t", "ll", ...) are listed because the tokenizer splits "don't" into "don", "t".
STOP_WORDS: frozenset[str] = frozenset("""
a about above after again against ain all am an and any are aren as at
be because been before being below between both but by
can couldn d did didn do does doesn doing don down during
each few for from further
had hadn has hasn have haven having he her here hers herself him himself his how
i if in into is isn it its itself just
ll m ma me mightn more most mustn my myself
needn no nor not now o of off on once only or other our ours ourselves out over own
re s same shan she should shouldn so some such
t than that the their theirs them themselves then there these they this those through to too
under until up ve very
was wasn we were weren what when where which while who whom why will with won wouldn
y you your yours yourself yourselves
""".split())

# Words are runs of letters, numbers are runs of digits: "26Follow-up" -> "26", "follow", "up"
# (ROCOv2 runs sentences together, see reference.md); punctuation and symbols are dropped.
_TOKENIZER = RegexpTokenizer(r"[a-z]+|\d+(?:\.\d+)?")
_PORTER = PorterStemmer()


def tokenize(text: str) -> list[str]:
    """Lower-cased word and number tokens of ``text``, punctuation dropped (notebook 07)."""
    return _TOKENIZER.tokenize(str(text).lower())


def preprocess_caption(text: str, stem: bool = True, remove_stop_words: bool = True) -> list[str]:
    """The paper's caption pipeline: tokenise + lower-case, drop stop words, Porter-stem (notebook 07).

    Lower-casing comes first although the paper lists it after stop-word removal: the stop list is
    lower case, so "The" would otherwise survive.
    """
    tokens = tokenize(text)
    if remove_stop_words:
        tokens = [t for t in tokens if t not in STOP_WORDS]
    if stem:
        tokens = [_PORTER.stem(t) for t in tokens]
    return tokens


@dataclass
class Vocabulary:
    """Token <-> id map with the four special tokens first (``<pad>`` = 0) (notebook 07)."""

    itos: list[str] = field(default_factory=lambda: list(SPECIAL_TOKENS))

    def __post_init__(self) -> None:
        self.stoi = {t: i for i, t in enumerate(self.itos)}

    @classmethod
    def build(cls, token_lists: Iterable[Sequence[str]], min_freq: int = 1,
              max_size: int | None = None) -> "Vocabulary":
        """Words seen at least ``min_freq`` times (most frequent first, ties alphabetical)."""
        counts = Counter(t for tokens in token_lists for t in tokens)
        words = sorted((w for w, c in counts.items() if c >= min_freq and w not in SPECIAL_TOKENS),
                       key=lambda w: (-counts[w], w))
        if max_size is not None:
            words = words[: max(0, max_size - len(SPECIAL_TOKENS))]
        return cls(list(SPECIAL_TOKENS) + words)

    def __len__(self) -> int:
        return len(self.itos)

    @property
    def pad_id(self) -> int:
        return self.stoi[PAD]

    @property
    def start_id(self) -> int:
        return self.stoi[START]

    @property
    def end_id(self) -> int:
        return self.stoi[END]

    @property
    def unk_id(self) -> int:
        return self.stoi[UNK]

    def encode(self, tokens: Sequence[str], max_len: int | None = None) -> list[int]:
        """``<start> tokens <end>`` as ids, unknown words -> ``<unk>``; ``max_len`` counts all ids and
        truncates the words, keeping ``<end>`` so the decoder always learns to stop."""
        ids = [self.stoi.get(t, self.unk_id) for t in tokens]
        if max_len is not None:
            ids = ids[: max(0, max_len - 2)]
        return [self.start_id, *ids, self.end_id]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Tokens up to the first ``<end>``, without ``<start>``/``<pad>``."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.end_id:
                break
            if i in (self.start_id, self.pad_id):
                continue
            out.append(self.itos[i])
        return out

    def to_dict(self) -> dict:
        return {"itos": self.itos}

    @classmethod
    def from_dict(cls, d: dict) -> "Vocabulary":
        return cls(list(d["itos"]))


@dataclass
class CaptionTextConfig:
    """How captions become token ids; one object so training and decoding agree (notebook 07)."""

    stem: bool = True  # paper: Porter-style stemming; False trains on whole words (readable output)
    remove_stop_words: bool = True  # paper: NLTK English stop words removed
    min_freq: int = 2  # vocabulary frequency cut-off (paper gives none)
    max_len: int = 40  # ids per caption incl. <start>/<end> (paper gives none)

    def tokens(self, caption: str) -> list[str]:
        return preprocess_caption(caption, stem=self.stem, remove_stop_words=self.remove_stop_words)

    def build_vocab(self, captions: Iterable[str]) -> Vocabulary:
        return Vocabulary.build((self.tokens(c) for c in captions), min_freq=self.min_freq)


# ---- BLEU as seed 004 computed it ------------------------------------------------------------

_PUNCT = str.maketrans("", "", string.punctuation)
_SNOWBALL = SnowballStemmer("english")


def imageclef_bleu_tokens(caption: str) -> list[str]:
    """The ImageCLEF 2018-2021 BLEU text pipeline: lower-case, strip punctuation, split on white
    space, drop stop words, Snowball-stem."""
    words = str(caption).lower().translate(_PUNCT).split()
    return [_SNOWBALL.stem(w) for w in words if w not in STOP_WORDS]


def imageclef_bleu(gt: dict[str, str], pred: dict[str, str]) -> dict:
    """Mean per-image NLTK ``sentence_bleu`` (BLEU-4, no smoothing), each caption one sentence, over
    the ground-truth IDs (a missing prediction counts as empty) (notebook 07).

    Returns ``{"bleu": mean, "per_image": {id: score}}``. Seed 004 reports 40.29 % with it on
    ImageCLEFmed 2021.
    """
    smooth = SmoothingFunction().method0
    per_image = {}
    for image_id, ref in gt.items():
        ref_tokens = imageclef_bleu_tokens(ref)
        hyp_tokens = imageclef_bleu_tokens(pred.get(image_id, ""))
        if not ref_tokens and not hyp_tokens:
            per_image[image_id] = 1.0
        elif not ref_tokens or not hyp_tokens:
            per_image[image_id] = 0.0
        else:
            with warnings.catch_warnings():  # NLTK warns on every zero n-gram overlap
                warnings.simplefilter("ignore")
                per_image[image_id] = float(sentence_bleu([ref_tokens], hyp_tokens,
                                                          smoothing_function=smooth))
    mean = sum(per_image.values()) / max(1, len(per_image))
    return {"bleu": mean, "per_image": per_image}
