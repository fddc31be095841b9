"""The embedder interface that indexer/ and search/ rely on, and the plumbing every embedder shares."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
from PIL import Image

from models.batching import embed_in_batches
from models.errors import ModelMismatchError


class Embedder(Protocol):
    """L2-normalised float32 vectors (n, d). `name` is the identity that manifests record;
    `has_text_tower` says whether `embed_texts` works (zero-shot attributes and text refinement)."""

    @property
    def name(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    @property
    def has_text_tower(self) -> bool: ...

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray: ...

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray: ...


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

    def _encode(self, images: Sequence[Image.Image]) -> np.ndarray:
        raise NotImplementedError
