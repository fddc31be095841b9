"""The project-trained fashion embedder behind the same interface as the open_clip embedder. Preprocessing
is numpy and PIL, the network runs on ONNX Runtime (default) or PyTorch (`models.runtime`)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from models.embedding import BatchedEmbedder
from models.fashion_net.metadata import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    V1_ARCHITECTURE,
    V1_FORMAT,
    V1_TRAIN_COMMAND,
    network_metadata,
    read_v1_metadata,
)
from models.files import file_digest
from models.runtime import DEFAULT_RUNTIME, load_network

if TYPE_CHECKING:
    from models.fashion_net.network import FashionNet

log = logging.getLogger(__name__)

FORMAT = V1_FORMAT
TRAIN_COMMAND = V1_TRAIN_COMMAND


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
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    metadata = {
        "format": FORMAT,
        **network_metadata(V1_ARCHITECTURE, model.dimension, input_size, mean, std),
        "labels": json.dumps(labels),
        "training": json.dumps(training or {}),
    }
    save_file(state, str(path), metadata=metadata)


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
        self.runtime, self._device, self._batch_size = runtime, device, batch_size
        self._load(weights_path, threads)
        self._name = f"fashion-net:{weights_path.stem}#{file_digest(weights_path)[:12]}"
        log.info(
            "embedder %s ready, dimension %d, input %d px", self._name, self._dimension, self._input_size
        )

    def _load(self, weights_path: Path, threads: int) -> None:
        """Read and check the weights; load the network on `self.runtime` (subclasses load others)."""
        self._dimension, self._input_size, mean, std, self.labels = read_v1_metadata(weights_path)
        self._embed = load_network(weights_path, self.runtime, threads, self._device)
        self._set_normalisation(mean, std)

    def _set_normalisation(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self._mean = np.asarray(mean, dtype=np.float32).reshape(1, 3, 1, 1)
        self._std = np.asarray(std, dtype=np.float32).reshape(1, 3, 1, 1)

    @property
    def input_size(self) -> int:
        return self._input_size

    def preprocess(self, image: Image.Image) -> np.ndarray:
        """RGB, squashed to input_size x input_size (as in training), scaled to [0, 1]: float32 (3, s, s)."""
        size = self._input_size
        resized = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR, reducing_gap=3.0)
        return np.asarray(resized, dtype=np.float32).transpose(2, 0, 1) / np.float32(255.0)

    def pixels(self, images: Sequence[Image.Image]) -> np.ndarray:
        """The network's input for a batch of images: preprocessed and normalised, float32 (n, 3, s, s)."""
        return (np.stack([self.preprocess(image) for image in images]) - self._mean) / self._std

    def _encode(self, images: Sequence[Image.Image]) -> np.ndarray:
        return np.ascontiguousarray(self._run_network(images), dtype=np.float32)

    def _run_network(self, images: Sequence[Image.Image]) -> np.ndarray:
        """The network's output for a batch of images (preprocessed as in training)."""
        return self._embed(self.pixels(images))
