"""fashion-net-v3 at inference: one forward pass gives the retrieval embedding and every attribute head's
calibrated probabilities (the heads' `HeadOutput`), behind the same `Embedder` interface as v1."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from models.embedding import HeadOutput
from models.fashion_net.embedder import FashionNetEmbedder
from models.fashion_net.multitask import IMAGENET_MEAN, IMAGENET_STD, INPUT_SIZE, MultiTaskNet, load_multitask
from models.runtime import compile_network


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


class MultiTaskEmbedder(FashionNetEmbedder):
    """L2-normalised float32 (n, 256) embeddings plus head probabilities from a fashion-net-v3 file; the
    same options, preprocessing and identity (`fashion-net:<stem>#<digest>`) as v1's embedder."""

    def _load(self, weights_path: Path, threads: int) -> None:
        model = load_multitask(weights_path, self._device)
        self._head_labels = dict(model.head_labels)
        self._input_size = INPUT_SIZE
        self._dimension = model.dimension
        self._sizes = [len(labels) for labels in self._head_labels.values()]
        example = torch.zeros(2, 3, self._input_size, self._input_size)
        self._embed = compile_network(
            _Packed(model), self.runtime, threads, example, "packed", dynamic={0: "n"}
        )
        self._mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)

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
        return self._run_network(images).float().cpu().numpy()
