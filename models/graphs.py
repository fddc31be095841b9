"""The network graph of each kind of weights file this project ships, in PyTorch: the one function that the
PyTorch runtime runs and that `scripts/export_onnx.py` exports to ONNX, so both runtimes compute the same
thing. Pixels (n, 3, h, w), normalised, in; one float32 output out:

- fashion-net v1: the L2-normalised embedding (n, d);
- fashion-net-v3: [embedding | head 1 logits / T1 | head 2 logits / T2 ...] (n, d + sum of head sizes),
  each head's logits divided by its calibrated temperature (the softmax is the caller's);
- garment parser: per-pixel class logits (n, classes, h, w)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from models.errors import ModelMismatchError
from models.fashion_net.metadata import INPUT_SIZE, V1_FORMAT
from models.fashion_net.multitask import MultiTaskNet, load_multitask
from models.fashion_net.network import FashionNet, load_fashion_net
from models.files import read_weights_metadata
from models.parser.config import ARCHITECTURE as PARSER_ARCHITECTURE
from models.parser.network import load_network
from models.spec import MULTITASK_FORMAT


@dataclass(frozen=True)
class Graph:
    """An eval-mode module, the shape of one input (channels, height, width) and its output's name."""

    module: nn.Module
    input_shape: tuple[int, int, int]
    output_name: str
    kind: str


class Embedding(nn.Module):
    """fashion-net v1: pixels -> L2-normalised embedding."""

    def __init__(self, model: FashionNet) -> None:
        super().__init__()
        self.trunk, self.pool, self.project, self.neck = model.trunk, model.pool, model.project, model.neck

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        features = self.neck(self.project(self.pool(self.trunk(pixels))))
        return nn.functional.normalize(features.float(), dim=-1)


class PackedHeads(nn.Module):
    """fashion-net-v3 as one output: [embedding | head 1 logits / T1 | head 2 ...], in eval mode."""

    def __init__(self, model: MultiTaskNet) -> None:
        super().__init__()
        self.model = model
        self.scales = [1.0 / model.temperatures[name] for name in model.head_labels]

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        embedding, logits = self.model(pixels)
        scaled = [
            logits[name] * scale for name, scale in zip(self.model.head_labels, self.scales, strict=True)
        ]
        return torch.cat([embedding, *scaled], dim=1)


def graph_for(weights: Path) -> Graph:
    """The graph of a weights file, loaded and checked (metadata, and every tensor against the network)."""
    weights = Path(weights)
    metadata = read_weights_metadata(weights)
    if metadata.get("format") == MULTITASK_FORMAT:
        return Graph(PackedHeads(load_multitask(weights)).eval(), (3, INPUT_SIZE, INPUT_SIZE), "packed", "v3")
    if metadata.get("format") == V1_FORMAT:
        model = load_fashion_net(weights)
        size = int(metadata["input_size"])
        return Graph(Embedding(model).eval(), (3, size, size), "embedding", "fashion-net v1")
    if metadata.get("architecture") == PARSER_ARCHITECTURE:
        network, config = load_network(weights)
        height, width = config.input_size
        return Graph(network.eval(), (3, height, width), "logits", "garment parser")
    raise ModelMismatchError(
        f"{weights} is neither a fashion-net nor a garment-parser weights file (format="
        f"{metadata.get('format')!r}, architecture={metadata.get('architecture')!r})"
    )
