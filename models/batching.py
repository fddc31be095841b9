"""Shared batching for embedders: fixed-size batches in, one (n, d) float32 array out."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image


def embed_in_batches(
    images: Sequence[Image.Image],
    batch_size: int,
    dimension: int,
    encode: Callable[[Sequence[Image.Image]], np.ndarray],
) -> np.ndarray:
    if len(images) == 0:
        return np.zeros((0, dimension), dtype=np.float32)
    parts = [encode(images[start : start + batch_size]) for start in range(0, len(images), batch_size)]
    return np.concatenate(parts, axis=0)
