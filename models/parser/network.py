"""The garment parser network and its safetensors weights format (checked on load).

The network is torchvision's LR-ASPP with a MobileNetV3-Large backbone, built with `weights=None` (random
init; nothing is downloaded). The weights file carries metadata that says what it is, and loading refuses a
file whose architecture, classes or tensors do not match the network it is loaded into.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import nn
from torchvision.models.segmentation import lraspp_mobilenet_v3_large

from models.errors import ModelMismatchError, WeightsNotFoundError
from models.parser.taxonomy import PARSER_CLASSES

ARCHITECTURE = "lraspp_mobilenet_v3_large"
FORMAT_VERSION = "1"
DEFAULT_INPUT_SIZE: tuple[int, int] = (320, 224)  # (height, width); CCP photos are about 830 x 550
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
TRAIN_COMMAND = (
    "python -m models.parser.train --data ../shared/data/ccp "
    "--out models/weights/garment-parser-v2.safetensors --minutes 55 --seed 0 --threads 1, then the same "
    "command with --minutes 135 (resumes the checkpoint), then v3 from v2: --out "
    "models/weights/garment-parser-v3.safetensors --minutes 90 --height 448 --width 320 --lr 1e-3 "
    "--init models/weights/garment-parser-v2.safetensors --work-dir var/parser-train-v3 "
    "(models/weights/garment-parser-v3.md)"
)


@dataclass(frozen=True)
class ParserConfig:
    """What a weights file declares about the network it holds."""

    architecture: str = ARCHITECTURE
    classes: tuple[str, ...] = PARSER_CLASSES
    input_size: tuple[int, int] = DEFAULT_INPUT_SIZE
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def to_metadata(self) -> dict[str, str]:
        return {
            "format_version": FORMAT_VERSION,
            "architecture": self.architecture,
            "classes": json.dumps(list(self.classes)),
            "input_size": json.dumps(list(self.input_size)),
            "mean": json.dumps(list(self.mean)),
            "std": json.dumps(list(self.std)),
        }

    @classmethod
    def from_metadata(cls, metadata: dict[str, str], path: Path) -> ParserConfig:
        try:
            return cls(
                architecture=metadata["architecture"],
                classes=tuple(json.loads(metadata["classes"])),
                input_size=tuple(json.loads(metadata["input_size"])),
                mean=tuple(json.loads(metadata["mean"])),
                std=tuple(json.loads(metadata["std"])),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ModelMismatchError(
                f"{path}: garment-parser metadata missing or malformed ({error!r})"
            ) from error


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


def read_config(path: Path) -> ParserConfig:
    """The config stored in a weights file; WeightsNotFoundError when the file does not exist."""
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(
            f"garment-parser weights not found at {path}. They ship with the repository "
            f"(models/weights/garment-parser-v3.safetensors); to rebuild them run: {TRAIN_COMMAND}"
        )
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError) as error:
        raise ModelMismatchError(f"{path} is not a readable safetensors file: {error}") from error
    return ParserConfig.from_metadata(metadata, path)


def load_network(
    path: Path, expected_classes: tuple[str, ...] = PARSER_CLASSES
) -> tuple[GarmentParserNet, ParserConfig]:
    """Load a weights file into a fresh network (float32, eval mode) after checking it matches."""
    config = read_config(path)
    if config.architecture != ARCHITECTURE:
        raise ModelMismatchError(
            f"{path}: architecture {config.architecture!r} does not match this code's {ARCHITECTURE!r}"
        )
    if tuple(config.classes) != tuple(expected_classes):
        raise ModelMismatchError(
            f"{path}: classes {list(config.classes)} do not match the parser taxonomy "
            f"{list(expected_classes)}"
        )
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
