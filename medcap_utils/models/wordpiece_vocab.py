"""A WordPiece vocabulary trained from captions the same way in every process (issue 14).

The demo profile trains its own small vocabularies (``blip_tokenizer(kind="wordpiece")`` for the demo
BLIP of notebooks 02-04, :func:`medcap_utils.models.causal_tokenizer.train_causal_tokenizer` for the
GPT-2 / OPT stand-ins of notebooks 03 and 06). ``tokenizers``' ``WordPieceTrainer`` gives a different
vocabulary in every Python process: its alphabet and its tie-breaks between merges of equal count follow
the iteration order of Rust hash maps, which is seeded per process. A different vocabulary changes
the embedding rows the model starts from, so two runs of ``make reproduce`` gave different weights
and different metrics.

This module runs the same algorithm (byte-pair merges on whitespace/punctuation-split, normalised
words, with WordPiece's ``##`` continuation prefix, most frequent pair first) with every order fixed:
the alphabet is sorted, and a tie between pairs of equal count goes to the pair whose text sorts first.
Normalisation and pre-tokenisation are ``tokenizers``' own BERT components, so the pieces it learns
are the pieces the tokenizer then finds.
"""
from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

from tokenizers import normalizers, pre_tokenizers

PREFIX = "##"  # WordPiece's mark for a piece that continues a word


def split_words(texts: Iterable[str], lowercase: bool = True) -> Counter:
    """Word counts after BERT's normaliser (lower-case, accents stripped) and pre-tokeniser."""
    normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    pre = pre_tokenizers.BertPreTokenizer()
    counts: Counter = Counter()
    for text in texts:
        counts.update(word for word, _ in pre.pre_tokenize_str(normalizer.normalize_str(str(text))))
    return counts


def _pairs(symbols: Sequence[str]):
    return zip(symbols, symbols[1:])


def train_wordpiece_vocab(texts: Iterable[str], vocab_size: int, special_tokens: Sequence[str],
                          lowercase: bool = True, min_frequency: int = 1) -> dict[str, int]:
    """``{piece: id}``: ``special_tokens`` first (ids 0..), the sorted alphabet, then merged pieces in
    the order they were learnt, until ``vocab_size`` pieces or no pair occurs ``min_frequency`` times.

    Deterministic: the result depends only on the texts (as a multiset), the arguments and nothing else.
    """
    word_counts = split_words(texts, lowercase)
    words = sorted(word_counts)  # a fixed order for the word index
    freq = [word_counts[w] for w in words]
    symbols = [[w[0]] + [PREFIX + c for c in w[1:]] for w in words]

    vocab: dict[str, int] = {}
    for piece in list(special_tokens) + sorted({s for word in symbols for s in word}):
        vocab.setdefault(piece, len(vocab))

    pair_count: Counter = Counter()
    where: dict[tuple[str, str], set[int]] = defaultdict(set)  # pair -> indices of words holding it
    for i, word in enumerate(symbols):
        for pair in _pairs(word):
            pair_count[pair] += freq[i]
            where[pair].add(i)
    # Max-heap on count; among equal counts the smallest (left, right) text wins, in every process.
    heap = [(-c, a, b) for (a, b), c in pair_count.items()]
    heapq.heapify(heap)

    while len(vocab) < vocab_size and heap:
        neg, a, b = heapq.heappop(heap)
        if pair_count.get((a, b), 0) != -neg:
            continue  # a stale entry: the count changed after it was pushed
        if -neg < max(min_frequency, 1):
            break
        merged = a + b[len(PREFIX):]
        vocab.setdefault(merged, len(vocab))
        changed: set[tuple[str, str]] = set()
        for i in sorted(where.pop((a, b), ())):
            old = symbols[i]
            for pair in _pairs(old):
                pair_count[pair] -= freq[i]
                changed.add(pair)
            new, k = [], 0
            while k < len(old):
                if k + 1 < len(old) and old[k] == a and old[k + 1] == b:
                    new.append(merged)
                    k += 2
                else:
                    new.append(old[k])
                    k += 1
            symbols[i] = new
            kept = set(_pairs(new))
            for pair in _pairs(old):
                if pair not in kept:
                    where[pair].discard(i)
            for pair in _pairs(new):
                pair_count[pair] += freq[i]
                where[pair].add(i)
                changed.add(pair)
        pair_count.pop((a, b), None)
        for pair in sorted(changed):
            count = pair_count.get(pair, 0)
            if count > 0:
                heapq.heappush(heap, (-count, *pair))
            else:
                pair_count.pop(pair, None)
    return vocab
