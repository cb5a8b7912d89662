"""Typed schemas of the recipe sections in ``configs/recipes/``, read by
:func:`medcap_utils.training.recipe.read_recipe`.

One dataclass per section, field names as the recipes write them. The classes are schemas, not the objects
the code passes around: the reader checks a section against its class (types, unknown keys, required
fields = fields without a default) and returns the keys the recipe gives. Defaults matter only for
:class:`BlipModel`, whose defaults are the base layer of every BLIP recipe (the old ``MODEL_DEFAULTS``);
elsewhere the consuming code keeps its own fallbacks, so a field here defaults to None = "not given".
"""
from __future__ import annotations

from dataclasses import dataclass, field

from medcap_utils.decoding.config import DecodingConfig
from medcap_utils.training.config import TrainConfig

# ------------------------------------------------------------------ BLIP (2q2t-2024, uit-oggy-2025, medblip-2025)

@dataclass
class BlipBuild:
    """``build_demo_blip`` keyword arguments (the demo's small BLIP built offline)."""
    tokenizer: str | None = None
    vocab_size: int | None = None
    vision_hidden: int | None = None
    vision_layers: int | None = None
    text_hidden: int | None = None
    text_layers: int | None = None
    heads: int | None = None
    patch_size: int | None = None


@dataclass
class BlipModel:
    """One model section of a BLIP recipe (``blip_base``, ``blip_large``, ``blip``)."""
    train: TrainConfig  # required: without it a model would train with library defaults
    model: str | None = "Salesforce/blip-image-captioning-base"  # hub id or directory; null = build the demo BLIP
    image_size: int = 224
    max_length: int = 200
    label_smoothing: float = 0.1
    prompt: str | None = None
    freeze_vision: bool = False
    freeze_text: bool = False
    build: BlipBuild = field(default_factory=dict)  # demo only; {} = nothing to build
    eval_images: int = 200  # validation images captioned per epoch for BLEU-4 / modality mention rate
    # per-epoch validation decoding (and notebooks 02-03's test captions); checked by DecodingConfig itself
    decoding: DecodingConfig = field(default_factory=lambda: {"num_beams": 1, "max_new_tokens": 40,
                                                              "no_repeat_ngram_size": 3})
    fast: bool = False  # blip_fast: SDPA attention + chunked cross-entropy (same loss/gradients)
    notes: str | None = None


# ------------------------------------------------------------------------------------ MedCSRA (medcsra-2025)

@dataclass
class MedcsraModel:
    backbone: str  # hub id, directory, or "demo" (tiny random ResNet)
    head: str | None = None  # "medcsra" | "csra"
    lam: float | None = None
    temperature: float | None = None
    width: int | None = None  # demo backbone only
    branches: str | None = None  # "both" (None: the paper's fusion) | "global" | "attention": notebook 05's ablation


@dataclass
class MedcsraAugment:
    """``medcap_utils.data.batch_augment.AugmentConfig`` fields besides ``out_size`` (that is ``data.image_size``)."""
    crop_scale: tuple[float, float] | None = None
    crop_ratio: tuple[float, float] | None = None
    hflip_p: float | None = None
    max_rotation_deg: float | None = None
    brightness: float | None = None
    contrast: float | None = None
    saturation: float | None = None


@dataclass
class MedcsraData:
    image_size: int
    min_count: int | None = None
    cache_size: int | None = None
    normalize: bool | None = None
    augment: MedcsraAugment | None = None


@dataclass
class MedcsraRecipe:
    model: MedcsraModel
    data: MedcsraData
    train: TrainConfig
    thresholds: list[float] | None = None


# ----------------------------------------------------------------------------------- MSMedCap (msmedcap-2024)

@dataclass
class MsmedcapModel:
    clip: str | None = None  # hub ids (paper / authors_code)
    sam: str | None = None
    lm: str | None = None
    qformer_init: str | None = None
    num_query_tokens: int | None = None
    sam_tokens: str | None = None
    prompt: str | None = None
    image_size: int | None = None  # demo: toy parts
    hidden: int | None = None
    sam_channels: int | None = None
    lm_hidden: int | None = None


@dataclass
class MsmedcapStage1:
    train: TrainConfig
    data: dict[str, str] | None = None
    negatives: str | None = None
    image_size: int | None = None


@dataclass
class MsmedcapStage2:
    train: TrainConfig
    image_size: int | None = None


@dataclass
class MsmedcapLmPretrain:
    train: TrainConfig


@dataclass
class MsmedcapRecipe:
    model: MsmedcapModel
    stage1: MsmedcapStage1
    stage2: MsmedcapStage2
    # the authors' code sets these five, so the paper layer must state each (a deleted line is an error, not
    # a silent default: repetition_penalty 9.0 would become 1.0)
    decoding: DecodingConfig = field(metadata={"required_keys": (
        "num_beams", "max_new_tokens", "min_new_tokens", "repetition_penalty", "length_penalty")})
    lm_pretrain: MsmedcapLmPretrain | None = None  # demo only: the toy OPT learns caption text first
    notes: str | None = None


# ------------------------------------------------------------------------------ XAI-LSTM (xai-lstm-2021)

@dataclass
class LstmText:
    """``CaptionTextConfig`` fields."""
    stem: bool | None = None
    remove_stop_words: bool | None = None
    min_freq: int | None = None
    max_len: int | None = None


@dataclass
class LstmModel:
    encoder: str  # hub id, directory, or "demo"
    freeze_encoder: bool | None = None
    image_size: int | None = None
    embed_dim: int | None = None
    semantic_dim: int | None = None
    attention_dim: int | None = None
    decoder_dim: int | None = None
    dropout: float | None = None
    deep_output: bool | None = None
    label_kind: str | None = None  # "concepts" | "words"
    label_min_count: int | None = None
    width: int | None = None  # demo encoder only
    depths: list[int] | None = None
    position_in_scores: bool | None = None
    grid_pool: int | None = None
    init_state: str | None = None
    position_embedding: bool | None = None


@dataclass
class LstmLoss:
    alpha_c: float | None = None
    semantic_weight: float | None = None


@dataclass
class LstmAugment:
    """``medcap_utils.data.augment.FlipCropConfig`` fields."""
    hflip_p: float | None = None
    vflip_p: float | None = None
    crop_p: float | None = None
    crop_fraction: float | None = None


@dataclass
class LstmRecipe:
    text: LstmText
    model: LstmModel
    loss: LstmLoss
    augment: LstmAugment
    train: TrainConfig
    decoding: DecodingConfig  # the LSTM's search: num_beams and max_new_tokens


# ------------------------------------------------------------------- demo stand-ins (standins.yaml, issue 17)

@dataclass
class StandinData:
    """The general synthetic domain a stand-in is pretrained on (``medcap_utils.data.synth_general``)."""
    dir: str  # repository-relative; built with these settings when missing
    seed: int = 0
    n_train: int = 3000
    n_valid: int = 300


@dataclass
class StandinBlip:
    """The BLIP captioner stand-in (``blip-captioning-general``): MiniLM text decoder, small ViT, LM pretraining."""
    train: TrainConfig
    out: str  # repository-relative model folder
    data: StandinData
    vocab_from: list[str]  # data folders whose captions (every split) choose the BERT word pieces kept
    image_size: int = 64
    patch_size: int = 16
    vision_hidden: int = 128
    vision_layers: int = 2
    vision_heads: int = 4
    text_layers: int = 2  # MiniLM's first layers copied into the text decoder
    max_length: int = 40
    label_smoothing: float = 0.1
    eval_images: int = 300  # general valid images captioned after pretraining (BLEU-4, distinct captions)
    decoding: DecodingConfig = field(default_factory=lambda: {"num_beams": 1, "max_new_tokens": 40,
                                                              "no_repeat_ngram_size": 0})
    notes: str | None = None


@dataclass
class StandinVitGpt2:
    """The ViT-GPT2 captioner stand-in (``vit-gpt2-captioning-general``): ViT + GPT-2, LM pretraining."""
    train: TrainConfig
    out: str  # repository-relative model folder
    data: StandinData
    vocab_from: list[str]  # data folders whose captions (every split) train its tokenizer
    image_size: int = 64
    patch_size: int = 8
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    vocab_size: int = 2000  # an upper bound for the tokenizer trained on ``vocab_from``
    max_length: int = 40
    eval_images: int = 300
    decoding: DecodingConfig = field(default_factory=lambda: {"num_beams": 1, "max_new_tokens": 40,
                                                              "no_repeat_ngram_size": 0})
    notes: str | None = None


@dataclass
class StandinResnet:
    """The ImageNet stand-in (``resnet-classifier-general``): a small ResNet classifier of the general scenes."""
    train: TrainConfig
    out: str  # repository-relative model folder
    data: StandinData
    image_size: int = 96  # the input size of the recipes that start from it (xai-lstm demo: 96 px)
    width: int = 32  # stem channels; each further stage doubles them
    depths: list[int] = field(default_factory=lambda: [1, 1])  # basic blocks per stage
    notes: str | None = None
