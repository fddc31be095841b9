"""The embedder interface that indexer/ and search/ rely on, and the plumbing every embedder shares."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from PIL import Image

from models.batching import embed_in_batches
from models.errors import ModelMismatchError


@dataclass(frozen=True)
class HeadOutput:
    """One image's calibrated attribute-head probabilities: head -> labels, and -> probabilities (sum 1)."""

    labels: Mapping[str, tuple[str, ...]]
    probabilities: Mapping[str, np.ndarray]

    def best(self, head: str) -> tuple[str, float]:
        """The head's most probable label and its probability."""
        probs = self.probabilities[head]
        index = int(np.argmax(probs))
        return self.labels[head][index], float(probs[index])

    def ranked(self, head: str) -> list[tuple[str, float]]:
        """Every label of the head with its probability, most probable first."""
        probs = self.probabilities[head]
        return [(self.labels[head][i], float(probs[i])) for i in np.argsort(-probs, kind="stable")]


class Embedder(Protocol):
    """L2-normalised float32 vectors (n, d). `name` is the identity that manifests record;
    `has_text_tower` says whether `embed_texts` works (zero-shot attributes and text refinement);
    `head_labels` names the trained attribute heads (empty: none), whose calibrated probabilities
    `describe_images` returns with the vectors from the same pass."""

    @property
    def name(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    @property
    def has_text_tower(self) -> bool: ...

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray: ...

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray: ...

    @property
    def head_labels(self) -> Mapping[str, tuple[str, ...]]: ...

    def describe_images(
        self, images: Sequence[Image.Image]
    ) -> tuple[np.ndarray, list[HeadOutput] | None]: ...


class BatchedEmbedder:
    """Name, dimension and fixed-size batching over `_encode`; image-only unless a subclass says otherwise."""

    _name: str
    _dimension: int
    _batch_size: int

    @property
    def name(self) -> str:
        return self._name

    @property
    def dimension(self) -> int:
        return self._dimension

    @property
    def has_text_tower(self) -> bool:
        return False

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        return embed_in_batches(images, self._batch_size, self._dimension, self._encode)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        raise ModelMismatchError(f"{self._name} has no text tower: it embeds images only")

    @property
    def head_labels(self) -> Mapping[str, tuple[str, ...]]:
        return {}

    def describe_images(self, images: Sequence[Image.Image]) -> tuple[np.ndarray, list[HeadOutput] | None]:
        """Vectors and, for a model with attribute heads, each image's head probabilities (else None)."""
        return self.embed_images(images), None

    def _encode(self, images: Sequence[Image.Image]) -> np.ndarray:
        raise NotImplementedError
