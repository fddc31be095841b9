"""What a garment-parser weights file declares (architecture, classes, input size, normalisation) and its
checks, without PyTorch: the serving path (ONNX Runtime) reads only this; the network is in `network`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from models.errors import ModelMismatchError, WeightsNotFoundError
from models.files import read_weights_metadata
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


def read_config(path: Path) -> ParserConfig:
    """The config stored in a weights file; WeightsNotFoundError when the file does not exist."""
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(
            f"garment-parser weights not found at {path}. They ship with the repository "
            f"(models/weights/garment-parser-v3.safetensors); to rebuild them run: {TRAIN_COMMAND}"
        )
    return ParserConfig.from_metadata(read_weights_metadata(path), path)


def check_config(
    config: ParserConfig, path: Path, expected_classes: tuple[str, ...] = PARSER_CLASSES
) -> None:
    """ModelMismatchError unless the file's architecture and classes are this code's."""
    if config.architecture != ARCHITECTURE:
        raise ModelMismatchError(
            f"{path}: architecture {config.architecture!r} does not match this code's {ARCHITECTURE!r}"
        )
    if tuple(config.classes) != tuple(expected_classes):
        raise ModelMismatchError(
            f"{path}: classes {list(config.classes)} do not match the parser taxonomy "
            f"{list(expected_classes)}"
        )
