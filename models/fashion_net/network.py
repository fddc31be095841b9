"""A compact retrieval CNN: MobileNetV3-Small trunk, pooled, projected, BN-neck, L2-normalised output."""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from safetensors.torch import load_file
from torch import nn
from torch.nn import functional as F

from models.errors import ModelMismatchError
from models.fashion_net.metadata import (
    DEFAULT_DIMENSION,
    DEFAULT_INPUT_SIZE,
    IMAGENET_MEAN,
    IMAGENET_STD,
    network_metadata,
    read_v1_metadata,
)
from models.fashion_net.metadata import V1_ARCHITECTURE as ARCHITECTURE

__all__ = [
    "ARCHITECTURE", "DEFAULT_DIMENSION", "DEFAULT_INPUT_SIZE", "IMAGENET_MEAN", "IMAGENET_STD",
    "CosineClassifier", "FashionNet", "GeM", "load_fashion_net", "network_metadata",
]  # fmt: skip


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


def load_fashion_net(path: Path) -> FashionNet:
    """The v1 network of `path` in eval mode, after checking its metadata and that every tensor fits."""
    dimension, *_ = read_v1_metadata(path)
    model = FashionNet(dimension)
    try:
        model.load_state_dict(load_file(str(path)), strict=True)
    except RuntimeError as exc:
        raise ModelMismatchError(
            f"{path} does not fit {ARCHITECTURE} with dimension {dimension}: "
            f"{str(exc).splitlines()[0]} {str(exc).splitlines()[1:2]}"
        ) from exc
    return model.eval()
