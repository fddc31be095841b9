"""A compact retrieval CNN: MobileNetV3-Small trunk, pooled, projected, BN-neck, L2-normalised output."""

from __future__ import annotations

import json
from collections.abc import Sequence

import torch
import torchvision
from torch import nn
from torch.nn import functional as F

ARCHITECTURE = "fashion-net-mnv3s"
DEFAULT_DIMENSION = 256
DEFAULT_INPUT_SIZE = 112
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class GeM(nn.Module):
    """Generalised-mean pooling; p is learned (p=1 is average pooling, large p approaches max)."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.tensor(p))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.p.clamp(min=1.0)
        return x.clamp(min=self.eps).pow(p).mean(dim=(2, 3)).pow(1.0 / p)


class FashionNet(nn.Module):
    """Image -> embedding. `forward` returns the un-normalised BN-neck output; `embed` normalises it."""

    def __init__(self, dimension: int = DEFAULT_DIMENSION) -> None:
        super().__init__()
        trunk = torchvision.models.mobilenet_v3_small(weights=None)
        self.trunk = trunk.features
        channels = 576
        self.pool = GeM()
        self.project = nn.Linear(channels, dimension, bias=False)
        self.neck = nn.BatchNorm1d(dimension)
        self.dimension = dimension

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.neck(self.project(self.pool(self.trunk(pixels))))

    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.forward(pixels).float(), dim=-1)


class CosineClassifier(nn.Module):
    """Normalised-softmax head with an additive cosine margin (CosFace); used only in training."""

    def __init__(self, dimension: int, classes: int, scale: float = 16.0, margin: float = 0.15) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(classes, dimension) * 0.01)
        self.scale = scale
        self.margin = margin

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        cosine = F.normalize(embeddings, dim=-1) @ F.normalize(self.weight, dim=-1).t()
        if labels is not None and self.margin:
            cosine = cosine - self.margin * F.one_hot(labels, cosine.shape[1]).to(cosine.dtype)
        return self.scale * cosine


def network_metadata(
    architecture: str, dimension: int, input_size: int, mean: Sequence[float], std: Sequence[float]
) -> dict[str, str]:
    """What a weights file says about its network and preprocessing (checked again on load)."""
    return {
        "architecture": architecture,
        "dimension": str(dimension),
        "input_size": str(input_size),
        "mean": json.dumps(list(mean)),
        "std": json.dumps(list(std)),
    }
