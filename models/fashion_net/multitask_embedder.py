"""fashion-net-v3 at inference: one forward pass gives the retrieval embedding and every attribute head's
calibrated probabilities (the heads' `HeadOutput`), behind the same `Embedder` interface as v1. The graph
(`models.graphs.PackedHeads`) divides each head's logits by its temperature; the softmax is here."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from models.embedding import HeadOutput
from models.fashion_net.embedder import FashionNetEmbedder
from models.fashion_net.metadata import read_multitask_metadata
from models.runtime import load_network


class MultiTaskEmbedder(FashionNetEmbedder):
    """L2-normalised float32 (n, 256) embeddings plus head probabilities from a fashion-net-v3 file; the
    same options, preprocessing and identity (`fashion-net:<stem>#<digest>`) as v1's embedder."""

    def _load(self, weights_path: Path, threads: int) -> None:
        metadata = read_multitask_metadata(weights_path)
        self._head_labels: dict[str, tuple[str, ...]] = dict(metadata["heads"])
        self._input_size = int(metadata["input_size"])
        self._dimension = int(metadata["dimension"])
        self._sizes = [len(labels) for labels in self._head_labels.values()]
        self._embed = load_network(weights_path, self.runtime, threads, self._device)
        self._set_normalisation(metadata["mean"], metadata["std"])

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
        return np.asarray(self._run_network(images), dtype=np.float32)
