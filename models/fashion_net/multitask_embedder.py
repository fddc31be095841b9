"""fashion-net-v3 at inference: one forward pass gives the retrieval embedding and every attribute head's
calibrated probabilities (the heads' `HeadOutput`), behind the same `Embedder` interface as v1."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from models.embedding import BatchedEmbedder, HeadOutput
from models.errors import ConfigError
from models.fashion_net.multitask import MultiTaskNet, load_multitask
from models.files import file_digest
from models.runtime import DEFAULT_RUNTIME, compile_network

log = logging.getLogger(__name__)


class _Packed(torch.nn.Module):
    """The network as one output for export: [embedding | head 1 logits / T1 | head 2 ...], in eval mode."""

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


class MultiTaskEmbedder(BatchedEmbedder):
    """L2-normalised float32 (n, 256) embeddings plus head probabilities from a fashion-net-v3 file."""

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
        model = load_multitask(weights_path, device)
        self.runtime = runtime
        self._head_labels = dict(model.head_labels)
        self._input_size = 112
        self._dimension = model.dimension
        self._batch_size = batch_size
        self._device = device
        self._sizes = [len(labels) for labels in self._head_labels.values()]
        example = torch.zeros(2, 3, self._input_size, self._input_size)
        self._run = compile_network(_Packed(model), runtime, threads, example, "packed", dynamic={0: "n"})
        self._mean = torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)
        self._std = torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)
        self._name = f"fashion-net:{weights_path.stem}#{file_digest(weights_path)[:12]}"
        log.info(
            "embedder %s ready, dimension %d, heads %s", self._name, self._dimension, list(self.head_labels)
        )

    @property
    def input_size(self) -> int:
        return self._input_size

    @property
    def head_labels(self) -> Mapping[str, tuple[str, ...]]:
        return self._head_labels

    def describe_images(self, images: Sequence[Image.Image]) -> tuple[np.ndarray, list[HeadOutput] | None]:
        """Embeddings (n, d) and each image's head probabilities, from one pass per batch."""
        if not images:
            return np.zeros((0, self._dimension), dtype=np.float32), []
        packed = np.concatenate(
            [
                self._forward(images[start : start + self._batch_size])
                for start in range(0, len(images), self._batch_size)
            ]
        )
        vectors = np.ascontiguousarray(packed[:, : self._dimension], dtype=np.float32)
        outputs = []
        splits = np.cumsum(self._sizes)[:-1]
        for row in packed[:, self._dimension :]:
            scaled = np.split(row, splits)
            probabilities = {}
            for name, logits in zip(self._head_labels, scaled, strict=True):
                shifted = np.exp(logits - logits.max())
                probabilities[name] = (shifted / shifted.sum()).astype(np.float32)
            outputs.append(HeadOutput(self._head_labels, probabilities))
        return vectors, outputs

    def _encode(self, images: Sequence[Image.Image]) -> np.ndarray:
        return np.ascontiguousarray(self._forward(images)[:, : self._dimension], dtype=np.float32)

    def _forward(self, images: Sequence[Image.Image]) -> np.ndarray:
        size = self._input_size
        batch = []
        for image in images:
            resized = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR, reducing_gap=3.0)
            batch.append(torch.from_numpy(np.asarray(resized, dtype=np.uint8).copy()).permute(2, 0, 1))
        pixels = torch.stack(batch).float().div_(255.0)
        pixels = ((pixels - self._mean) / self._std).to(self._device)
        with torch.inference_mode():
            packed = self._run(pixels)
        return packed.float().cpu().numpy()
