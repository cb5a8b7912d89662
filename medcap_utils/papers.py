"""The five seed papers (``../shared/seeds/``): what each claims, the numbers it reports, which
notebooks reproduce it and which runs in ``reports/runs/`` come from those notebooks.

Each paper's claims as testable statements live in ``configs/claims.yaml``, read once by :func:`claims` (for
:mod:`medcap_utils.evaluation.claims`, the claims table of ``medcap claims`` and notebooks 02-07 and 09).

Read by :mod:`medcap_utils.evaluation.report_summary` (the per-paper summary at the top of ``REPORT.md``), by
:mod:`medcap_utils.plotting` (one colour family per notebook) and by notebook 08's summary table.
Titles, authors and links are given only where the paper text or ``../shared/reference.md`` states
them; ``link`` is None otherwise.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache


@dataclass(frozen=True)
class Paper:
    key: str  # seed file prefix
    short: str
    title: str
    authors: str
    venue: str
    year: int
    link: str | None
    code: tuple[str, ...]
    notebooks: tuple[str, ...]
    claim: str
    reported: tuple[tuple[str, str], ...]  # (what, where in the paper)
    real_run: str  # what the rocov2 profile writes for this paper
    profile_note: str = ""
    extra: dict = field(default_factory=dict)


PAPERS = (
    Paper(
        key="000", short="2Q2T 2024",
        title="UIT-2Q2T at ImageCLEFmedical Caption 2024",
        authors="team 2Q2T (author names are not in the seed text)",
        venue="ImageCLEFmedical Caption 2024 working notes (title as the seed index gives it)", year=2024, link=None,
        code=("https://github.com/QuangHoang059/DS312",),
        notebooks=("02", "04"),
        claim="BLIP fine-tuned on ROCOv2 captions medical images; BLIP-large scores above BLIP-base, and beam "
              "search above greedy decoding on the validation set.",
        reported=(("validation, BLIP-large beam 4: ROUGE 0.2745, BERTScore 0.6680, BLEU 0.2955; "
                   "BLIP-base beam 5: ROUGE 0.2647, BERTScore 0.6596", "Table 1"),
                  ("test: BERTScore 0.6178, ROUGE 0.2478, BLEU-1 0.2213, CIDEr 0.2200, CLIPScore 0.8271 "
                   "(1st by CLIPScore)", "Table 2")),
        real_run="notebook 02 trains BLIP-base (15 epochs) and BLIP-large (5 epochs) on ROCOv2; notebook 04 "
                 "decodes the validation split greedy and with beam 3/4/5/10 beside Table 1"),
    Paper(
        key="001", short="MedBLIP 2025",
        title="MedBLIP: Fine-tuning BLIP for Medical Image Captioning",
        authors="author names are not in the seed text (arXiv abstract page)",
        venue="arXiv preprint 2505.14726 (eess.IV)", year=2025, link="https://arxiv.org/abs/2505.14726",
        code=(), notebooks=("03",),
        claim="Full fine-tuning of BLIP beats zero-shot BLIP, BLIP-2, InstructBLIP and ViT-GPT2; fine-tuning "
              "only the decoder (vision encoder frozen) is a strong baseline with about 5% less training time.",
        reported=(("decoder-only training time about 0.95x full fine-tuning; full fine-tuning best overall",
                   "abstract; the seed text has no table"),),
        real_run="notebook 03 fine-tunes BLIP-base from the hub checkpoint in four ways and captions with the "
                 "real ViT-GPT2, BLIP-2 and InstructBLIP checkpoints zero-shot"),
    Paper(
        key="002", short="UIT-Oggy 2025",
        title="UIT-Oggy at ImageCLEFmedical 2025 Caption: CSRA-Enhanced Concept Detection and BLIP-Driven "
              "Vision-Language Captioning",
        authors="G.-P. Bui-Hoang, M.-H. Dinh-Doan, V.-M. Luong, T. B. Nguyen-Tat",
        venue="CLEF 2025 Working Notes, Madrid", year=2025, link=None,
        code=("https://github.com/vanminh1878/DS312-medblip_large", "https://github.com/MHuyennn/DS312-medblip_large"),
        notebooks=("02", "05"),
        claim="MedCSRA (ResNet-101 with a global and a class-specific attention branch) detects concepts well "
              "(4th place); BLIP-large fine-tuned for 2 epochs captions with good semantic scores but weak "
              "clinical factuality.",
        reported=(("concept detection test: F1 0.5613 (primary), 0.9104 (secondary)", "Table 2"),
                  ("captioning test: BERTScore recall 0.5951, ROUGE-1 0.2535, UMLS concept F1 0.1672, overall "
                   "0.3211 (the abstract says 0.3554)", "Table 1")),
        real_run="notebook 05 trains MedCSRA on an ImageNet ResNet-101 and scores the official F1s; notebook 02 "
                 "fine-tunes BLIP-large with the UIT-Oggy recipe"),
    Paper(
        key="003", short="MSMedCap 2024",
        title="SAM-Guided Enhanced Fine-Grained Encoding with Mixed Semantic Learning for Medical Image "
              "Captioning (MSMedCap)",
        authors="Z. Zhang, B. Wang, W. Liang, Y. Li, X. Guo, G. Wang, S. Li, G. Wang",
        venue="venue not stated in the seed text", year=2024, link=None,
        code=("https://github.com/AHandsomePython/MSMedCap",),
        notebooks=("06",),
        claim="Two image encoders (CLIP for the whole image, SAM for fine detail) with one Q-Former each, "
              "pre-trained with mixed semantic learning, caption better than BLIP-2 or SAM alone.",
        reported=(("MSMedCap (G, G+M): BLEU-1 0.1089, METEOR 0.0626, ROUGE-L 0.154, CIDEr 0.0575; "
                   "BLIP2 (G+M): BLEU-1 0.0532; SAM-BLIP2 (G+M): BLEU-1 0.0834", "Table 1"),),
        real_run="notebook 06 builds the dual model from CLIP ViT-L/14, SAM ViT-base and OPT-2.7b and trains "
                 "stage 1 and stage 2 on ROCOv2"),
    Paper(
        key="004", short="XAI-LSTM 2022",
        title="Explainable attention-based encoder-decoder for medical image captioning",
        authors="D.-R. Beddiar, M. Oussalah, T. Seppänen",
        venue="IEEE conference paper; the seed text names neither title nor venue (title as the seed index "
              "describes the paper)", year=2022,
        link=None, code=(), notebooks=("07",),
        claim="A ResNet-50 + GRU self-attention + attention-LSTM captioner reaches BLEU 40.29% on ImageCLEFmed "
              "2021, and its attention maps, word importance and feature maps explain each caption.",
        reported=(("BLEU 40.29% (ImageCLEFmed 2021 test, 444 images)", "Table I"),),
        real_run="notebook 07 trains the captioner on ROCOv2 with an ImageNet ResNet-50 (no finding boxes there, "
                 "so the attention check of the demo is skipped)"),
)

BY_KEY = {p.key: p for p in PAPERS}

NOTEBOOKS = {"00": "Data setup", "01": "Dataset statistics", "02": "BLIP fine-tuning (2Q2T, UIT-Oggy)",
             "03": "MedBLIP ablation", "04": "Decoding experiments", "05": "Concept detection (MedCSRA)",
             "06": "MSMedCap", "07": "Explainable attention-LSTM captioner", "08": "Evaluation", "09": "Report"}


@dataclass(frozen=True)
class RunGroup:
    order: int
    notebook: str
    label: str
    paper: str | None  # key in BY_KEY, None for baselines and unknown runs


# Run names per notebook, in both profiles (configs/handoff.yaml and the notebooks' own prefixes).
_RUN_PATTERNS = (
    (r"^blip[_-](demo[_-]test[_-]uit|uit)", RunGroup(2, "02", "02 BLIP, UIT-Oggy recipe", "002")),
    (r"^blip[_-](demo|2q2t)", RunGroup(1, "02", "02 BLIP, 2Q2T recipe", "000")),
    (r"^medblip_", RunGroup(3, "03", "03 MedBLIP ablation", "001")),
    (r"^decoding_", RunGroup(4, "04", "04 decoding grid", "000")),
    (r"^medcsra", RunGroup(5, "05", "05 MedCSRA concepts", "002")),
    (r"^06_msmedcap", RunGroup(6, "06", "06 MSMedCap", "003")),
    (r"^xai[-_]lstm", RunGroup(7, "07", "07 attention-LSTM", "004")),
    (r"^baseline-", RunGroup(8, "08", "08 baselines", None)),
)


def run_group(run: str) -> RunGroup:
    """Which notebook (and paper) wrote the run named ``run``."""
    for pattern, group in _RUN_PATTERNS:
        if re.search(pattern, run):
            return group
    return RunGroup(9, "?", "other runs", None)


def citation(paper: Paper, markdown: bool = True) -> str:
    """One line: title, authors, venue and year, with the link where one is known."""
    title = f"[{paper.title}]({paper.link})" if (markdown and paper.link) else paper.title
    return f"{title}. {paper.authors}. {paper.venue}, {paper.year}."


CLAIM_FIELDS = ("paper", "id", "notebook", "statement", "paper_numbers", "where", "kind")
CLAIM_KINDS = (">", ">=", "close", "faster", "threshold", "attention")


@lru_cache(maxsize=4)
def claims(path: str | None = None) -> tuple[dict, ...]:
    """Every paper's claims from ``configs/claims.yaml`` (or ``path``), checked: each has :data:`CLAIM_FIELDS`, a
    known ``kind``, a paper in :data:`BY_KEY`, runs ``a``/``b`` for run comparisons, a unique ``id``."""
    import yaml

    from medcap_utils.paths import repo_root

    source = repo_root() / "configs" / "claims.yaml" if path is None else path
    with open(source, encoding="utf-8") as fh:
        items = yaml.safe_load(fh)
    seen = set()
    for item in items:
        missing = [k for k in CLAIM_FIELDS if not item.get(k)]
        where = f"{source}: claim {item.get('id', '?')}"
        if missing:
            raise ValueError(f"{where} lacks {missing}")
        if item["kind"] not in CLAIM_KINDS or item["paper"] not in BY_KEY or item["id"] in seen:
            raise ValueError(f"{where}: kind must be one of {CLAIM_KINDS}, paper one of {list(BY_KEY)}, ids unique")
        if item["kind"] in (">", ">=", "close", "faster") and not (item.get("a") and item.get("b")):
            raise ValueError(f"{where}: a {item['kind']!r} claim names runs a and b")
        seen.add(item["id"])
    return tuple(items)
