"""The garment parser network and its safetensors weights format (checked on load).

The network is torchvision's LR-ASPP with a MobileNetV3-Large backbone, built with `weights=None` (random
init; nothing is downloaded). The weights file carries metadata that says what it is, and loading refuses a
file whose architecture, classes or tensors do not match the network it is loaded into.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torchvision.models.segmentation import lraspp_mobilenet_v3_large

from models.errors import ModelMismatchError
from models.parser.config import (
    ARCHITECTURE,
    DEFAULT_INPUT_SIZE,
    FORMAT_VERSION,
    IMAGENET_MEAN,
    IMAGENET_STD,
    TRAIN_COMMAND,
    ParserConfig,
    check_config,
    read_config,
)
from models.parser.taxonomy import PARSER_CLASSES

# The file's config and its checks live in `models.parser.config` (no PyTorch); named here too.
__all__ = [
    "ARCHITECTURE", "DEFAULT_INPUT_SIZE", "FORMAT_VERSION", "IMAGENET_MEAN", "IMAGENET_STD", "TRAIN_COMMAND",
    "GarmentParserNet", "ParserConfig", "build_network", "load_network", "read_config", "save_weights",
]  # fmt: skip


class GarmentParserNet(nn.Module):
    """LR-ASPP MobileNetV3-Large returning per-pixel class logits at the input resolution."""

    def __init__(self, num_classes: int = len(PARSER_CLASSES)) -> None:
        super().__init__()
        self.model = lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=num_classes)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model(pixels)["out"]


def build_network(config: ParserConfig | None = None) -> GarmentParserNet:
    config = config or ParserConfig()
    if config.architecture != ARCHITECTURE:
        raise ModelMismatchError(
            f"unknown garment-parser architecture {config.architecture!r}; expected {ARCHITECTURE!r}"
        )
    return GarmentParserNet(num_classes=len(config.classes))


def save_weights(network: nn.Module, path: Path, config: ParserConfig, half: bool = True) -> None:
    """Write the network's state as safetensors (float tensors as fp16 when `half`) with its config."""
    state = {}
    for key, value in network.state_dict().items():
        value = value.detach().cpu().contiguous()
        state[key] = value.half() if half and value.is_floating_point() else value
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    save_file(state, str(temporary), metadata=config.to_metadata())
    temporary.replace(path)


def load_network(
    path: Path, expected_classes: tuple[str, ...] = PARSER_CLASSES
) -> tuple[GarmentParserNet, ParserConfig]:
    """Load a weights file into a fresh network (float32, eval mode) after checking it matches."""
    config = read_config(path)
    check_config(config, path, expected_classes)
    network = build_network(config)
    state = load_file(str(path))
    reference = network.state_dict()
    missing = sorted(set(reference) - set(state))
    unexpected = sorted(set(state) - set(reference))
    wrong_shape = [key for key in reference if key in state and state[key].shape != reference[key].shape]
    if missing or unexpected or wrong_shape:
        raise ModelMismatchError(
            f"{path}: tensors do not match {ARCHITECTURE} (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}, "
            f"wrong shape {wrong_shape[:3]})"
        )
    network.load_state_dict({key: value.to(reference[key].dtype) for key, value in state.items()})
    network.eval()
    return network, config
