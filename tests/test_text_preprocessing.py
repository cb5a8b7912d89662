"""Caption preprocessing of seed 004 and its ImageCLEF-2021 BLEU, on real ROCOv2 rows."""
from __future__ import annotations

from medcap_utils.data.rocov2 import read_captions
from medcap_utils.data.text_preprocessing import (
    END,
    PAD,
    START,
    STOP_WORDS,
    UNK,
    CaptionTextConfig,
    Vocabulary,
    imageclef_bleu,
    preprocess_caption,
    tokenize,
)


def test_real_rows_lose_stop_words_and_get_stemmed(sample_dir):
    captions = read_captions(sample_dir / "test_captions.csv")
    first = captions.set_index("ID").loc["ROCOv2_2023_test_000001", "Caption"]
    # "CT chest axial view showing a huge ascending aortic aneurysm (*)."
    assert preprocess_caption(first) == ["ct", "chest", "axial", "view", "show", "huge", "ascend",
                                         "aortic", "aneurysm"]
    assert preprocess_caption(first, stem=False) == ["ct", "chest", "axial", "view", "showing", "huge",
                                                     "ascending", "aortic", "aneurysm"]
    all_tokens = [t for c in captions["Caption"] for t in preprocess_caption(c)]
    assert len(all_tokens) > 500
    assert not STOP_WORDS & set(all_tokens)
    assert all(t == t.lower() and t.isalnum() or t.replace(".", "").isdigit() for t in all_tokens)
    raw_words = {w.lower() for c in captions["Caption"] for w in tokenize(c)}
    assert {"the", "of", "with", "and", "a"} <= raw_words  # they were there before removal
    assert "arteri" in all_tokens and "artery" not in all_tokens  # Porter stems


def test_tokenizer_splits_run_together_sentences_and_drops_punctuation():
    assert tokenize("day 26Follow-up (arrow), “left”") == ["day", "26", "follow", "up", "arrow", "left"]
    assert tokenize("size 3.5 cm") == ["size", "3.5", "cm"]


def test_vocabulary_cut_off_and_round_trip():
    token_lists = [["mass", "left", "lung"], ["mass", "right", "lung"], ["mass", "liver"]]
    vocab = Vocabulary.build(token_lists, min_freq=2)
    assert vocab.itos[:4] == [PAD, START, END, UNK]
    assert vocab.itos[4:] == ["mass", "lung"]  # counts 3 and 2; the once-seen words are cut
    ids = vocab.encode(["mass", "left", "lung"])
    assert ids == [vocab.start_id, vocab.stoi["mass"], vocab.unk_id, vocab.stoi["lung"], vocab.end_id]
    assert vocab.decode(ids + [vocab.pad_id]) == ["mass", UNK, "lung"]
    assert len(vocab.encode(["mass"] * 50, max_len=10)) == 10
    assert vocab.encode(["mass"] * 50, max_len=10)[-1] == vocab.end_id
    assert Vocabulary.from_dict(vocab.to_dict()).stoi == vocab.stoi
    assert len(Vocabulary.build(token_lists, min_freq=1)) == 4 + 5


def test_text_config_stem_switch(sample_dir):
    captions = read_captions(sample_dir / "test_captions.csv")["Caption"]
    stemmed = CaptionTextConfig(stem=True, min_freq=1).build_vocab(captions)
    whole = CaptionTextConfig(stem=False, min_freq=1).build_vocab(captions)
    assert "tomographi" in stemmed.stoi and "tomography" in whole.stoi
    assert len(stemmed) < len(whole)  # stemming merges inflections


def test_imageclef_bleu_protocol():
    gt = {"a": "The CT of the chest shows a mass.", "b": "", "c": "MRI brain"}
    # Stop words, case and punctuation do not matter; "shows" ~ "showing" after stemming.
    pred = {"a": "ct chest showing mass", "b": "", "c": "ultrasound"}
    out = imageclef_bleu(gt, pred)
    assert out["per_image"] == {"a": 1.0, "b": 1.0, "c": 0.0}
    assert abs(out["bleu"] - 2 / 3) < 1e-9
    # A missing prediction is empty; short candidates pay the brevity penalty.
    part = imageclef_bleu({"a": "ct chest axial view mass left lung apex"}, {"a": "ct chest axial view mass"})
    assert 0.0 < part["bleu"] < 1.0
    assert imageclef_bleu({"a": "ct chest"}, {})["bleu"] == 0.0
