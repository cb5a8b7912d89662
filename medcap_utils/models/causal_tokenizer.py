"""An offline tokenizer for the demo's small GPT-2 / OPT stand-ins (ViT-GPT2, BLIP-2, InstructBLIP).

The real checkpoints ship byte-level BPE tokenizers that only live on the model hub. The demo trains
a small WordPiece on the demo training captions instead and makes it behave like OPT's tokenizer:
a beginning-of-sequence token is prepended and nothing is appended (the caller adds the end token to
training targets), so prompts built for generation end where the caption starts.
Used by notebook 03 (through ``build_demo_vit_gpt2`` and ``build_demo_blip2``).
"""
from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from medcap_utils.models.wordpiece_vocab import train_wordpiece_vocab

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"


def train_causal_tokenizer(captions: Iterable[str], vocab_size: int = 2000) -> PreTrainedTokenizerFast:
    """A lower-casing WordPiece tokenizer trained on ``captions`` that prepends ``<s>`` (like OPT).

    ``vocab_size`` is an upper bound; the demo captions need far fewer pieces.
    """
    # The same vocabulary in every process (tokenizers' WordPieceTrainer differs per process).
    vocab = train_wordpiece_vocab(captions, vocab_size, [PAD, UNK, BOS, EOS])
    core = Tokenizer(models.WordPiece(vocab=vocab, unk_token=UNK))
    core.normalizer = normalizers.BertNormalizer(lowercase=True)
    core.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    core.decoder = decoders.WordPiece()
    core.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, core.token_to_id(BOS))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=UNK,
        padding_side="right", model_max_length=512,
    )
