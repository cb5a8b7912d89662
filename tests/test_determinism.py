"""Same inputs, same numbers (issue 14): the demo's trained vocabularies and the demo BLIP's weights
are identical across Python processes.

Before issue 14, tokenizers' WordPieceTrainer gave each process another vocabulary (its order follows
per-process Rust hash seeds), so two runs of the demo trained different BLIPs (91 of 91 tensors differed).
The two-process tests below failed then; the unit tests pin what the deterministic trainer computes.
"""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from medcap_utils.models.wordpiece_vocab import split_words, train_wordpiece_vocab

REPO = Path(__file__).resolve().parents[1]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

# Run in a child process: build both demo vocabularies and a demo BLIP, take 3 AdamW steps on fixed
# inputs, print digests of the vocabularies and of every weight tensor.
CHILD = r"""
import hashlib, json, sys, tempfile
import torch
from medcap_utils.data.synth import synthesize
from medcap_utils.data.rocov2 import split_frame
from medcap_utils.models.blip import build_demo_blip, load_blip, caption_targets
from medcap_utils.models.causal_tokenizer import train_causal_tokenizer

root = tempfile.mkdtemp()
synthesize(root, seed=0, n_train=60, n_valid=4, n_test=4)
caps = list(split_frame(root, "train")["caption"])
out = {"causal_vocab": sorted(train_causal_tokenizer(caps).get_vocab().items())}
path = build_demo_blip(root + "/blip", caps, vocab_size=400, image_size=32, vision_layers=1, text_layers=1,
                       vision_hidden=32, text_hidden=32, heads=2)
model, proc = load_blip(path)
out["blip_vocab"] = sorted(proc.tokenizer.get_vocab().items())
torch.manual_seed(0)
pixels = torch.randn(4, 3, 32, 32)
batch = caption_targets(proc.tokenizer, caps[:4], proc.tokenizer.bos_token_id)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
for _ in range(3):
    loss = model(pixel_values=pixels, **batch).loss
    loss.backward(); opt.step(); opt.zero_grad()
out["weights"] = {k: hashlib.sha256(v.detach().contiguous().numpy().tobytes()).hexdigest()
                  for k, v in model.state_dict().items()}
out = {k: (v if k == "weights" else hashlib.sha256(json.dumps(v).encode()).hexdigest()) for k, v in out.items()}
json.dump(out, sys.stdout)
"""


def _child(hash_seed: str) -> dict:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, "-c", CHILD], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def two_processes():
    return _child("1"), _child("2")


def test_demo_vocabularies_are_the_same_in_every_process(two_processes):
    a, b = two_processes
    assert a["blip_vocab"] == b["blip_vocab"]
    assert a["causal_vocab"] == b["causal_vocab"]


def test_demo_blip_weights_after_training_steps_are_the_same_in_every_process(two_processes):
    a, b = two_processes
    differ = sorted(k for k in a["weights"] if a["weights"][k] != b["weights"].get(k))
    assert set(a["weights"]) == set(b["weights"]) and not differ, f"{len(differ)} of {len(a['weights'])} tensors differ"


def test_specials_first_then_sorted_alphabet_then_merges_by_count():
    vocab = train_wordpiece_vocab(["ab ab ab cd cd"], 100, SPECIALS)
    pieces = sorted(vocab, key=vocab.get)
    assert pieces[:5] == SPECIALS
    assert pieces[5:9] == ["##b", "##d", "a", "c"]  # the alphabet, in text order
    assert pieces[9:] == ["ab", "cd"]  # 'ab' occurs 3 times, 'cd' twice
    assert list(vocab.values()) == list(range(len(vocab)))


def test_ties_between_equal_counts_go_to_the_pair_that_sorts_first():
    vocab = train_wordpiece_vocab(["zy ba", "ba zy"], 100, [])
    merged = [p for p in sorted(vocab, key=vocab.get) if len(p.replace("##", "")) > 1]
    assert merged == ["ba", "zy"]  # both pairs occur twice: 'b'+'##a' sorts before 'z'+'##y'


def test_merges_continue_inside_words_and_stop_at_the_vocabulary_size():
    vocab = train_wordpiece_vocab(["abcd"] * 3, 100, [])
    # all three pairs occur 3 times; '##' sorts before letters, so the inner pair merges first
    assert sorted(vocab, key=vocab.get)[-3:] == ["##bc", "##bcd", "abcd"]
    small = train_wordpiece_vocab(["abcd"] * 3, 5, [])
    assert len(small) == 5 and "abcd" not in small


def test_min_frequency_stops_rare_merges():
    vocab = train_wordpiece_vocab(["aa aa bb"], 100, [], min_frequency=2)
    assert "aa" in vocab and "bb" not in vocab


def test_order_of_the_captions_does_not_matter(demo_root):
    from medcap_utils.data.rocov2 import split_frame

    caps = list(split_frame(demo_root, "train")["caption"])
    shuffled = caps[:]
    random.Random(1).shuffle(shuffled)
    assert train_wordpiece_vocab(caps, 600, SPECIALS) == train_wordpiece_vocab(shuffled, 600, SPECIALS)


def test_every_training_word_tokenizes_without_unknowns_and_whole_words_become_single_pieces(demo_root):
    from medcap_utils.data.rocov2 import split_frame
    from medcap_utils.models.blip import blip_tokenizer

    caps = list(split_frame(demo_root, "train")["caption"])
    tok = blip_tokenizer("wordpiece", caps, vocab_size=1000)
    ids = [i for c in caps for i in tok(c)["input_ids"]]
    assert tok.unk_token_id not in ids
    words = split_words(caps)
    frequent = [w for w, n in words.most_common(20)]
    assert all(len(tok.tokenize(w)) == 1 for w in frequent), [tok.tokenize(w) for w in frequent]
    # the same number of tokens as tokenizers' own trainer gives on these captions (same algorithm)
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertTokenizerFast

    ref = BertWordPieceTokenizer(lowercase=True)
    ref.train_from_iterator(caps, vocab_size=1000, min_frequency=1, show_progress=False, special_tokens=SPECIALS)
    ref_tok = BertTokenizerFast(vocab=ref.get_vocab(), do_lower_case=True)
    n_ref = sum(len(ref_tok(c)["input_ids"]) for c in caps)
    assert abs(len(ids) - n_ref) <= 0.02 * n_ref


def test_medcsra_starts_from_the_recipe_seed_not_from_the_process_random_state(demo_root, monkeypatch):
    """The repeat check found notebook 05's MedCSRA differing between two runs (F1 0.772 vs 0.765): its
    random ResNet was built before the trainer seeded, from whatever state the process's RNG was in."""
    import hashlib

    import torch

    from medcap_utils.experiments.concept_detection_medcsra import load_recipe
    from medcap_utils.training import medcsra as cd

    class Stop(Exception):
        pass

    seen = []

    def first_weights(model, *args, **kwargs):
        seen.append(hashlib.sha256(b"".join(v.numpy().tobytes() for v in model.state_dict().values())).hexdigest())
        raise Stop

    monkeypatch.setattr(cd, "fit", first_weights)
    recipe = load_recipe("configs/recipes/medcsra-2025.yaml", "demo")
    for state in (1, 2):
        torch.manual_seed(state)  # what earlier cells of a notebook may have left behind
        with pytest.raises(Stop):
            cd.train_medcsra(demo_root, recipe)
    assert seen[0] == seen[1]
    with pytest.raises(Stop):  # and the seed is the recipe's: another seed, other weights
        cd.train_medcsra(demo_root, recipe, seed=recipe["train"].get("seed", 0) + 1)
    assert seen[2] != seen[0]
