"""The project-trained fashion embedder behind the same interface as the open_clip embedder."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from models.embedding import BatchedEmbedder
from models.errors import ConfigError, ModelMismatchError
from models.fashion_net.network import ARCHITECTURE, IMAGENET_MEAN, IMAGENET_STD, FashionNet, network_metadata
from models.files import file_digest, read_weights_metadata, require_weights
from models.runtime import DEFAULT_RUNTIME, compile_network

log = logging.getLogger(__name__)

FORMAT = "fashion-net"
TRAIN_COMMAND = (
    "python -m models.fashion_net.train --clothing ../shared/data/clothing --ccp ../shared/data/ccp "
    "--out {path} --minutes 30 --seed 0 --threads 1"
)


def save_weights(
    model: FashionNet,
    path: Path,
    labels: list[str],
    input_size: int,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    training: dict[str, Any] | None = None,
) -> None:
    """Write the embedding network (no classifier head) as safetensors with its preprocessing metadata."""
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    metadata = {
        "format": FORMAT,
        **network_metadata(ARCHITECTURE, model.dimension, input_size, mean, std),
        "labels": json.dumps(labels),
        "training": json.dumps(training or {}),
    }
    save_file(state, str(path), metadata=metadata)


def _parse_metadata(path: Path, metadata: dict[str, str]) -> tuple[int, int, list[float], list[float]]:
    if metadata.get("format") != FORMAT or metadata.get("architecture") != ARCHITECTURE:
        raise ModelMismatchError(
            f"{path} was saved as format={metadata.get('format')!r} architecture="
            f"{metadata.get('architecture')!r}; this loader expects {FORMAT!r} / {ARCHITECTURE!r}"
        )
    try:
        dimension = int(metadata["dimension"])
        input_size = int(metadata["input_size"])
        mean = [float(v) for v in json.loads(metadata["mean"])]
        std = [float(v) for v in json.loads(metadata["std"])]
    except (KeyError, ValueError, TypeError) as exc:
        raise ModelMismatchError(f"{path} has missing or malformed metadata: {exc!r}") from exc
    if dimension < 1 or not 16 <= input_size <= 1024 or len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ModelMismatchError(
            f"{path} metadata is out of range: dimension={dimension}, input_size={input_size}, "
            f"mean={mean}, std={std}"
        )
    return dimension, input_size, mean, std


class FashionNetEmbedder(BatchedEmbedder):
    """L2-normalised float32 embeddings of shape (n, dimension) from a project-trained FashionNet."""

    def __init__(
        self,
        weights_path: Path,
        device: str = "cpu",
        threads: int = 0,
        batch_size: int = 32,
        runtime: str = DEFAULT_RUNTIME,
    ) -> None:
        weights_path = Path(weights_path)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if runtime == "onnx" and device != "cpu":
            raise ConfigError(f"runtime 'onnx' runs on the CPU; device is {device!r}")
        self.runtime, self._device, self._batch_size = runtime, device, batch_size
        self._load(weights_path, threads)
        self._name = f"fashion-net:{weights_path.stem}#{file_digest(weights_path)[:12]}"
        log.info(
            "embedder %s ready, dimension %d, input %d px", self._name, self._dimension, self._input_size
        )

    def _load(self, weights_path: Path, threads: int) -> None:
        """Read and check the weights; compile the network for `self.runtime` (subclasses load others)."""
        require_weights(
            weights_path, "fashion embedder", TRAIN_COMMAND, "models/weights/fashion-embedder-v1.md"
        )
        metadata = read_weights_metadata(weights_path)
        dimension, self._input_size, mean, std = _parse_metadata(weights_path, metadata)
        self.labels: list[str] = json.loads(metadata.get("labels", "[]"))
        model = FashionNet(dimension)
        state = load_file(str(weights_path))
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ModelMismatchError(
                f"{weights_path} does not fit {ARCHITECTURE} with dimension {dimension}: "
                f"{str(exc).splitlines()[0]} {str(exc).splitlines()[1:2]}"
            ) from exc
        self._model = model.to(self._device).eval()
        example = torch.zeros(2, 3, self._input_size, self._input_size)
        self._embed = compile_network(
            _Embed(self._model), self.runtime, threads, example, "embedding", dynamic={0: "n"}
        )
        self._dimension = dimension
        self._mean = torch.tensor(mean).view(1, 3, 1, 1)
        self._std = torch.tensor(std).view(1, 3, 1, 1)

    @property
    def input_size(self) -> int:
        return self._input_size

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """RGB, squashed to input_size x input_size (as in training), scaled and normalised: (3, s, s)."""
        size = self._input_size
        resized = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR, reducing_gap=3.0)
        pixels = torch.from_numpy(np.asarray(resized, dtype=np.uint8).copy())
        return pixels.permute(2, 0, 1).float().div_(255.0)

    def _encode(self, images: Sequence[Image.Image]) -> np.ndarray:
        return np.ascontiguousarray(self._run_network(images).cpu().numpy(), dtype=np.float32)

    def _run_network(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """The compiled network's output for a batch of images (preprocessed as in training)."""
        pixels = torch.stack([self.preprocess(image) for image in images])
        pixels = ((pixels - self._mean) / self._std).to(self._device)
        with torch.inference_mode():
            return self._embed(pixels)


class _Embed(torch.nn.Module):
    """Pixels -> L2-normalised embedding (the exported / fused unit)."""

    def __init__(self, model: FashionNet) -> None:
        super().__init__()
        self.trunk, self.pool, self.project, self.neck = model.trunk, model.pool, model.project, model.neck

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        features = self.neck(self.project(self.pool(self.trunk(pixels))))
        return torch.nn.functional.normalize(features.float(), dim=-1)
