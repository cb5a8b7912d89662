"""MedCSRA (seed 002, section 5.2): a ResNet backbone with a global branch and an attention branch.

Used by notebook ``05_concept_detection_medcsra``.

Two attention heads are offered:

* ``head="medcsra"`` — the branch as seed 002 describes it (and as the authors' public code does
  it): the final feature map is flattened to (B, C, HW), a linear layer C -> C followed by a sigmoid
  gives one weight per position and channel, the weighted features are summed over positions with
  ``einsum`` and a linear layer maps them to class logits. The attention is *not* class-specific.
  Fusion: ``logits = (1 - lam) * global + lam * attention`` with ``lam = 0.1``.
  ``branches="global"`` or ``"attention"`` outputs one branch's logits alone (the ablation of notebook 05).
* ``head="csra"`` — the original class-specific residual attention of Zhu & Wu, ICCV 2021 (seed
  002's reference [24]; the paper credits "Fang et al."): one 1x1 classifier per class gives a score
  per position, a softmax with temperature T over positions gives a class-specific attention map,
  and ``logits = base + lam * attention`` where ``base`` is the mean score over positions.

Channels: the paper writes 1024 channels for the last ResNet-101 block; its last stage
(``layer4``/``stage4``) has 2048. We always read the real count from the backbone's config.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import ResNetConfig, ResNetModel

HEADS = ("medcsra", "csra")
#: which branches' logits a model outputs: the paper's fusion of both, or one branch alone (seed 002's two-branch
#: claim needs the ablation: notebook 05 trains each branch alone with the same recipe)
BRANCHES = ("both", "global", "attention")


def fuse(global_logits: torch.Tensor, attention_logits: torch.Tensor, lam: float, branches: str,
         residual: bool = False) -> torch.Tensor:
    """The output logits: ``both`` fuses as the head does (MedCSRA ``(1 - lam) g + lam a``, CSRA ``g + lam a``);
    ``global`` / ``attention`` return that branch's logits alone."""
    if branches == "global":
        return global_logits
    if branches == "attention":
        return attention_logits
    return (global_logits if residual else (1 - lam) * global_logits) + lam * attention_logits


def load_resnet_backbone(name_or_path: str = "microsoft/resnet-101") -> ResNetModel:
    """A transformers ResNet: a hub id for real runs, or a directory written by ``save_pretrained``."""
    from medcap_utils.hub import from_pretrained  # a missing or corrupt checkpoint: one clear error

    return from_pretrained(ResNetModel, name_or_path)


def demo_resnet_config(width: int = 16) -> ResNetConfig:
    """A tiny bottleneck ResNet (one block per stage) that trains on two CPU cores in seconds."""
    return ResNetConfig(
        embedding_size=width,
        hidden_sizes=[width * 2, width * 4, width * 8, width * 16],
        depths=[1, 1, 1, 1],
        layer_type="bottleneck",
    )


def freeze_all_but_last_stage(backbone: ResNetModel) -> None:
    """Seed 002 fine-tunes only ResNet-101's last block (``layer4``); everything before stays frozen.

    BatchNorm running statistics of the frozen stages still update in train mode, as in the authors'
    code (they only switch ``requires_grad`` off).
    """
    for p in backbone.parameters():
        p.requires_grad = False
    for p in backbone.encoder.stages[-1].parameters():
        p.requires_grad = True


@dataclass
class MedCSRAOutput:
    logits: torch.Tensor  # (B, K) fused logits
    global_logits: torch.Tensor  # (B, K) GAP branch (MedCSRA) or mean-score base logits (CSRA)
    attention_logits: torch.Tensor  # (B, K) attention branch
    attention: torch.Tensor  # (B, HW, C) sigmoid weights (MedCSRA) or (B, K, HW) softmax (CSRA)
    feature_size: tuple[int, int]  # (H, W) of the final feature map


class MedCSRAHead(nn.Module):
    """Seed 002's dual branch: GAP -> linear, and sigmoid(linear(features)) -> einsum -> linear."""

    def __init__(self, channels: int, num_classes: int, lam: float = 0.1, branches: str = "both"):
        super().__init__()
        self.lam = lam
        self.branches = branches
        self.global_fc = nn.Linear(channels, num_classes)
        self.attention_proj = nn.Linear(channels, channels)  # "fully connected layer with 1024 outputs"
        self.attention_fc = nn.Linear(channels, num_classes)

    def forward(self, features: torch.Tensor) -> MedCSRAOutput:
        b, c, h, w = features.shape
        flat = features.flatten(2)  # (B, C, HW)
        global_logits = self.global_fc(flat.mean(dim=2))
        attention = torch.sigmoid(self.attention_proj(flat.transpose(1, 2)))  # (B, HW, C)
        # Weighted *sum* over positions, as in the authors' code (the paper does not say sum or mean).
        attended = torch.einsum("bcn,bnc->bc", flat, attention)
        attention_logits = self.attention_fc(attended)
        logits = fuse(global_logits, attention_logits, self.lam, self.branches)
        return MedCSRAOutput(logits, global_logits, attention_logits, attention, (h, w))

    def class_maps(self, out: MedCSRAOutput, features: torch.Tensor, class_index: int) -> torch.Tensor:
        """(B, H, W): each position's contribution to class ``class_index``'s attention logit.

        The sigmoid weights are per channel, not per class, so we project the weighted features of
        every position onto the class's row of ``attention_fc`` to get a class map to draw.
        """
        flat = features.flatten(2)  # (B, C, HW)
        weighted = flat * out.attention.transpose(1, 2)  # (B, C, HW)
        contrib = torch.einsum("c,bcn->bn", self.attention_fc.weight[class_index], weighted)
        return contrib.view(features.shape[0], *out.feature_size)


class CSRAHead(nn.Module):
    """Zhu & Wu (ICCV 2021) class-specific residual attention, one head with temperature T.

    ``temperature=math.inf`` is their T = infinity case (max pooling of the class scores).
    """

    def __init__(self, channels: int, num_classes: int, lam: float = 0.1, temperature: float = 1.0,
                 branches: str = "both"):
        super().__init__()
        self.lam = lam
        self.branches = branches
        self.temperature = temperature
        self.classifier = nn.Conv2d(channels, num_classes, kernel_size=1, bias=False)

    def forward(self, features: torch.Tensor) -> MedCSRAOutput:
        b, c, h, w = features.shape
        # Class scores per position, divided by the classifier norm as in the original method.
        norm = self.classifier.weight.flatten(1).norm(dim=1).view(1, -1, 1)
        scores = self.classifier(features).flatten(2) / norm  # (B, K, HW)
        base = scores.mean(dim=2)
        if math.isinf(self.temperature):
            attention = torch.zeros_like(scores).scatter_(2, scores.argmax(dim=2, keepdim=True), 1.0)
        else:
            attention = torch.softmax(scores * self.temperature, dim=2)
        attention_logits = (scores * attention).sum(dim=2)
        logits = fuse(base, attention_logits, self.lam, self.branches, residual=True)
        return MedCSRAOutput(logits, base, attention_logits, attention, (h, w))

    def class_maps(self, out: MedCSRAOutput, features: torch.Tensor, class_index: int) -> torch.Tensor:
        """(B, H, W): the class's softmax attention over positions."""
        return out.attention[:, class_index].reshape(features.shape[0], *out.feature_size)


class MedCSRA(nn.Module):
    """Backbone + head. ``forward(pixel_values)`` returns a :class:`MedCSRAOutput`."""

    def __init__(self, backbone: ResNetModel, num_classes: int, head: str = "medcsra",
                 lam: float = 0.1, temperature: float = 1.0, freeze_early_stages: bool = True,
                 classes: list[str] | None = None, branches: str = "both"):
        super().__init__()
        self.classes = classes  # the CUI of each output, saved with the weights
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}")
        if branches not in BRANCHES:
            raise ValueError(f"branches must be one of {BRANCHES}, got {branches!r}")
        self.branches = branches
        self.backbone = backbone
        self.channels = backbone.config.hidden_sizes[-1]  # 2048 for ResNet-101 (paper: 1024)
        self.num_classes = num_classes
        self.head_type = head
        self.temperature = temperature
        self.head = (MedCSRAHead(self.channels, num_classes, lam, branches) if head == "medcsra"
                     else CSRAHead(self.channels, num_classes, lam, temperature, branches))
        if freeze_early_stages:
            freeze_all_but_last_stage(backbone)

    @property
    def lam(self) -> float:
        return self.head.lam

    def features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.backbone(pixel_values=pixel_values).last_hidden_state

    def forward(self, pixel_values: torch.Tensor) -> MedCSRAOutput:
        return self.head(self.features(pixel_values))

    @torch.no_grad()
    def attention_maps(self, pixel_values: torch.Tensor, class_index: int) -> torch.Tensor:
        """(B, H, W) attention of the head for one class, at feature-map resolution (notebook 05)."""
        feats = self.features(pixel_values)
        return self.head.class_maps(self.head(feats), feats, class_index)

    def save_pretrained(self, out_dir: str | Path) -> Path:
        """Backbone via ``save_pretrained`` (loadable by :func:`load_resnet_backbone`), head as a state
        dict, settings and class list as JSON, ``checksums.sha256`` last; built under a temporary name, so
        the folder is complete or absent. The shared trainer calls this to keep the best epoch."""
        from medcap_utils.atomic import atomic_directory
        from medcap_utils.model_files import write_checksums

        out = Path(out_dir)
        meta = {"num_classes": self.num_classes, "head": self.head_type, "lam": self.lam,
                "temperature": None if math.isinf(self.temperature) else self.temperature,
                "classes": self.classes, "branches": self.branches}
        with atomic_directory(out) as tmp:
            self.backbone.save_pretrained(tmp / "backbone")
            torch.save(self.head.state_dict(), tmp / "head.pt")
            (tmp / "medcsra.json").write_text(json.dumps(meta, indent=1))
            write_checksums(tmp)
        return out

    @classmethod
    def from_pretrained(cls, model_dir: str | Path) -> "MedCSRA":
        """Inverse of :meth:`save_pretrained` (the backbone goes through :func:`load_resnet_backbone`); the
        folder is verified first, so a truncated or changed file is a ``CorruptModelError`` naming it."""
        from medcap_utils.model_files import verify_model_dir

        d = verify_model_dir(Path(model_dir))
        meta = json.loads((d / "medcsra.json").read_text())
        temperature = math.inf if meta["temperature"] is None else meta["temperature"]
        model = cls(load_resnet_backbone(d / "backbone"), meta["num_classes"], meta["head"],
                    meta["lam"], temperature, classes=meta["classes"],
                    branches=meta.get("branches", "both"))  # folders saved before the option: both
        model.head.load_state_dict(torch.load(d / "head.pt", map_location="cpu"))
        return model


def build_medcsra(backbone: str | ResNetConfig, num_classes: int, head: str = "medcsra",
                  lam: float = 0.1, temperature: float = 1.0, classes: list[str] | None = None,
                  branches: str = "both") -> MedCSRA:
    """A fresh detector: ``backbone`` is a hub id / directory (pretrained) or a config (random init)."""
    net = ResNetModel(backbone) if isinstance(backbone, ResNetConfig) else load_resnet_backbone(backbone)
    return MedCSRA(net, num_classes, head=head, lam=lam, temperature=temperature, classes=classes,
                   branches=branches)
