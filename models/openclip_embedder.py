"""The image (and text) towers of an open_clip model as an `Embedder` (the `open_clip` extra: PyTorch)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision import transforms

from models.embedding import BatchedEmbedder
from models.errors import ModelMismatchError
from models.openclip_loader import build_model, build_tokenizer
from models.runtime import use_torch_threads
from models.spec import RANDOM_INIT, EmbedderSpec

log = logging.getLogger(__name__)


class OpenClipEmbedder(BatchedEmbedder):
    """The image tower of an open_clip model."""

    def __init__(self, spec: EmbedderSpec) -> None:
        use_torch_threads(spec.threads, required=True)
        self._spec = spec
        self._batch_size = spec.batch_size
        self._model, self._preprocess, source = build_model(spec)
        self._square_first = _resizes_shortest_then_crops(self._preprocess)
        self._tokenizer = build_tokenizer(source, spec.cache_dir)
        self._name = f"open_clip:{source.source_id}"
        probe = self._encode([Image.new("RGB", (32, 32), (128, 128, 128))])
        self._dimension = int(probe.shape[1])
        log.info("embedder %s ready, dimension %d", self._name, self._dimension)

    @property
    def has_text_tower(self) -> bool:
        """A tokenizer is available and the weights are trained: a random-init text tower would only
        produce confident noise, so zero-shot attributes stay off for it."""
        return self._tokenizer is not None and self._spec.pretrained != RANDOM_INIT

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised text vectors (n, d) in the image vectors' space."""
        if self._tokenizer is None:
            raise ModelMismatchError(f"{self._name} has no usable text tokenizer offline")
        if not texts:
            return np.zeros((0, self._dimension), dtype=np.float32)
        tokens = self._tokenizer(list(texts)).to(self._spec.device)
        with torch.inference_mode():
            features: Any = self._model.encode_text(tokens)
            features = torch.nn.functional.normalize(features.float(), dim=-1)
        return np.ascontiguousarray(features.cpu().numpy(), dtype=np.float32)

    def _encode(self, images: Sequence[Image.Image]) -> np.ndarray:
        pixels = torch.stack([self._preprocess(self._bounded(image)) for image in images])
        pixels = pixels.to(self._spec.device)
        with torch.inference_mode():
            features: Any = self._model.encode_image(pixels)
            features = torch.nn.functional.normalize(features.float(), dim=-1)
        return np.ascontiguousarray(features.cpu().numpy(), dtype=np.float32)

    def _bounded(self, image: Image.Image) -> Image.Image:
        """Centre-crop to a square first when the transform resizes the shortest side and then centre-crops
        (open_clip's default): the same pixels survive, but a 65535x1 image no longer becomes a 224 x 14.7M
        intermediate (minutes of CPU and gigabytes of memory from one small upload)."""
        if not self._square_first:
            return image
        width, height = image.size
        side = min(width, height)
        if width == height:
            return image
        left, top = (width - side) // 2, (height - side) // 2
        return image.crop((left, top, left + side, top + side))


def _resizes_shortest_then_crops(preprocess: Any) -> bool:
    steps = list(getattr(preprocess, "transforms", []))
    if len(steps) < 2 or not isinstance(steps[0], transforms.Resize):
        return False
    size = steps[0].size
    shortest = isinstance(size, int) or (isinstance(size, list | tuple) and len(size) == 1)
    return shortest and isinstance(steps[1], transforms.CenterCrop)
