"""fashion-net-v3: the v1 retrieval network plus attribute heads and a product-vs-scene gate.

One MobileNetV3-Small trunk (112 px input, squashed, ImageNet mean/std) feeds:
- the v1 embedding path (GeM -> 576->256 projection -> BN neck -> L2 norm), and
- one linear head per attribute on the GeM-pooled trunk features (576-d).

`MultiTaskNet.forward(pixels)` returns `(embedding, {head: logits})`: the embedding is L2-normalised
float32 (n, 256); logits are raw (n, len(labels)). `probabilities(logits)` divides each head's logits by
its calibrated temperature before the softmax. Head label lists, their training sources and temperatures
are stored in the safetensors metadata and checked by `load_multitask`.

Also here, for the training recipe and benchmarks: `Part` (a source's images with their head labels,
encoded to class indices with ignore_index -100), batched `predict` on uint8 pixels and the per-head
temperature fit.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

from models.errors import ModelMismatchError, WeightsNotFoundError
from models.fashion_net.data import Sample, to_input
from models.fashion_net.metadata import (
    ARCHITECTURE,
    ARTICLE_LABELS,
    CATEGORY_LABELS,
    CLOTHING_ARTICLE,
    COLOUR_LABELS,
    DIMENSION,
    FORMAT,
    FPI_ARTICLES,
    HEAD_SOURCES,
    HEADS,
    IGNORE_INDEX,
    IMAGENET_MEAN,
    IMAGENET_STD,
    INPUT_SIZE,
    TRAIN_COMMAND,
    TRUNK_CHANNELS,
    V1_ARCHITECTURE,
    network_metadata,
    read_multitask_metadata,
)
from models.fashion_net.network import GeM
from models.files import read_weights_metadata

# The label spaces and the metadata check live in `models.fashion_net.metadata` (no PyTorch); named here too
# for the training recipe, benchmarks and tests.
__all__ = [
    "ARCHITECTURE", "ARTICLE_LABELS", "CATEGORY_LABELS", "CLOTHING_ARTICLE", "COLOUR_LABELS", "DIMENSION",
    "FORMAT", "FPI_ARTICLES", "HEAD_SOURCES", "HEADS", "IGNORE_INDEX", "IMAGENET_MEAN", "IMAGENET_STD",
    "INPUT_SIZE", "TRAIN_COMMAND", "MultiTaskNet", "Part", "fit_temperatures", "init_from_v1",
    "load_multitask", "predict", "read_multitask_metadata", "save_multitask",
]  # fmt: skip


class MultiTaskNet(nn.Module):
    """Pixels (n, 3, s, s), normalised -> (L2-normalised embedding (n, d), {head: logits (n, k)})."""

    def __init__(
        self,
        dimension: int = DIMENSION,
        heads: Mapping[str, Sequence[str]] | None = None,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.trunk = torchvision.models.mobilenet_v3_small(weights=None).features
        self.pool = GeM()
        self.project = nn.Linear(TRUNK_CHANNELS, dimension, bias=False)
        self.neck = nn.BatchNorm1d(dimension)
        self.dimension = dimension
        self.head_labels: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in (heads or HEADS).items()}
        self.dropout = nn.Dropout(dropout)
        self.heads = nn.ModuleDict(
            {name: nn.Linear(TRUNK_CHANNELS, len(labels)) for name, labels in self.head_labels.items()}
        )
        self.temperatures: dict[str, float] = dict.fromkeys(self.head_labels, 1.0)

    def features(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(un-normalised BN-neck embedding, pooled trunk features)."""
        pooled = self.pool(self.trunk(pixels))
        return self.neck(self.project(pooled)), pooled

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        embedding, pooled = self.features(pixels)
        hidden = self.dropout(pooled)
        logits = {name: head(hidden).float() for name, head in self.heads.items()}
        return F.normalize(embedding.float(), dim=-1), logits

    def probabilities(self, logits: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Softmax of each head's logits divided by its calibrated temperature; rows sum to 1."""
        return {
            name: F.softmax(value.float() / self.temperatures[name], dim=-1) for name, value in logits.items()
        }


# --- training-time helpers (label encoding, batched prediction, calibration) --------------------------


@dataclass
class Part:
    """The images of one source in one split, their group keys and head labels (-100 = none)."""

    source: str
    samples: list[Sample] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    labels: list[dict[str, str | None]] = field(default_factory=list)

    def add(self, sample: Sample, key: str, labels: dict[str, str | None]) -> None:
        self.samples.append(sample)
        self.keys.append(key)
        self.labels.append(labels)

    def subset(self, keep: set[str] | None = None, drop: set[str] | None = None) -> Part:
        part = Part(self.source)
        for sample, key, labels in zip(self.samples, self.keys, self.labels, strict=True):
            if (keep is None or key in keep) and (drop is None or key not in drop):
                part.add(sample, key, labels)
        return part

    def first(self, limit: int | None) -> Part:
        part = Part(self.source, self.samples[:limit], self.keys[:limit], self.labels[:limit])
        return part if limit else self

    def targets(self) -> np.ndarray:
        """(n, heads) int64 class indices; -100 where a head has no label or the source does not label it."""
        index = {name: {label: i for i, label in enumerate(labels)} for name, labels in HEADS.items()}
        out = np.full((len(self.samples), len(HEADS)), IGNORE_INDEX, dtype=np.int64)
        for row, labels in enumerate(self.labels):
            for column, name in enumerate(HEADS):
                value = labels.get(name)
                if value is not None and self.source in HEAD_SOURCES[name]:
                    out[row, column] = index[name].get(value, IGNORE_INDEX)
        return out


@torch.inference_mode()
def predict(
    model: MultiTaskNet, pixels: np.ndarray, size: int, mean: torch.Tensor, std: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Embeddings and raw logits of uint8 (n, h, w, 3) pixels, resized to `size`, in batches of 256."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    embeddings, logits = [], defaultdict(list)
    for start in range(0, len(pixels), 256):
        emb, out = model(to_input(torch.from_numpy(pixels[start : start + 256]), size, mean, std).to(device))
        embeddings.append(emb.cpu())
        for name, value in out.items():
            logits[name].append(value.cpu())
    model.train(was_training)
    return torch.cat(embeddings), {name: torch.cat(values) for name, values in logits.items()}


def fit_temperatures(
    model: MultiTaskNet,
    pixels: np.ndarray,
    targets: np.ndarray,
    size: int,
    mean: torch.Tensor,
    std: torch.Tensor,
) -> dict[str, float]:
    """One temperature per head minimising the NLL on the calibration images (grid search, 0.25-8)."""
    _, logits = predict(model, pixels, size, mean, std)
    grid = torch.logspace(math.log10(0.25), math.log10(8.0), 241)
    temperatures = {}
    for column, name in enumerate(HEADS):
        mask = torch.from_numpy(targets[:, column] != IGNORE_INDEX)
        if int(mask.sum()) < 10:  # too few labels to fit: uncalibrated
            temperatures[name] = 1.0
            continue
        values, labels = logits[name][mask], torch.from_numpy(targets[:, column])[mask]
        losses = torch.stack([F.cross_entropy(values / t, labels) for t in grid])
        temperatures[name] = round(float(grid[int(losses.argmin())]), 4)
    return temperatures


# --- weights file -----------------------------------------------------------------------------------


def init_from_v1(model: MultiTaskNet, path: Path) -> None:
    """Copy trunk, pooling, projection and neck from the v1 embedder file (read-only); heads stay random."""
    if not path.is_file():
        raise WeightsNotFoundError(
            f"v1 embedder weights {path} do not exist (models/weights/fashion-embedder-v1.md)"
        )
    metadata = read_weights_metadata(path)
    if metadata.get("architecture") != V1_ARCHITECTURE or metadata.get("dimension") != str(model.dimension):
        raise ModelMismatchError(
            f"{path} is architecture={metadata.get('architecture')!r} "
            f"dimension={metadata.get('dimension')!r}; "
            f"expected {V1_ARCHITECTURE!r} with dimension {model.dimension}"
        )
    missing, unexpected = model.load_state_dict(load_file(str(path)), strict=False)
    if unexpected or any(not key.startswith("heads.") for key in missing):
        raise ModelMismatchError(
            f"{path} does not fit the v3 trunk: missing={missing}, unexpected={unexpected}"
        )


def save_multitask(
    model: MultiTaskNet,
    path: Path,
    input_size: int = INPUT_SIZE,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    head_sources: Mapping[str, Sequence[str]] | None = None,
    training: dict[str, Any] | None = None,
) -> None:
    """Write the network (trunk, embedding path, heads) as safetensors with labels and temperatures."""
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    sources = head_sources if head_sources is not None else HEAD_SOURCES
    metadata = {
        "format": FORMAT,
        **network_metadata(ARCHITECTURE, model.dimension, input_size, mean, std),
        "heads": json.dumps({name: list(labels) for name, labels in model.head_labels.items()}),
        "head_sources": json.dumps({name: list(sources.get(name, ())) for name in model.head_labels}),
        "temperatures": json.dumps(model.temperatures),
        "training": json.dumps(training or {}),
    }
    save_file(state, str(path), metadata=metadata)


def load_multitask(path: Path, device: str = "cpu") -> MultiTaskNet:
    """The v3 network from `path` in eval mode, with its calibrated temperatures; checks the metadata.

    Raises WeightsNotFoundError (naming the path and the training command) when the file is missing and
    ModelMismatchError when the metadata or tensors do not match this architecture and label spaces.
    """
    path = Path(path)
    metadata = read_multitask_metadata(path)
    model = MultiTaskNet(metadata["dimension"], metadata["heads"])
    try:
        model.load_state_dict(load_file(str(path)), strict=True)
    except RuntimeError as exc:
        lines = str(exc).splitlines()
        raise ModelMismatchError(f"{path} does not fit {ARCHITECTURE}: {' '.join(lines[:2])}") from exc
    model.temperatures = dict(metadata["temperatures"])
    return model.to(device).eval()
