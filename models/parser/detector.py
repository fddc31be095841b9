"""`ParserDetector`: garments in a street photo from the trained garment parser (semantic segmentation)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from models.garment import Garment
from models.parser.config import check_config, read_config
from models.parser.instances import Instance
from models.parser.outfit import OutfitRules, outfit_instances
from models.runtime import DEFAULT_RUNTIME, Network, load_network, require_torch
from models.spec import SHIPPED_PARSER, SHIPPED_PARSER_FLIP

if TYPE_CHECKING:
    import torch

    from models.parser.network import GarmentParserNet


@dataclass(frozen=True)
class Parse:
    """Network output for one image at the network's input resolution."""

    class_map: np.ndarray  # (h, w) int64 class indices
    confidence: np.ndarray  # (h, w) float32 probability of the predicted class


def mirrored(pixels: np.ndarray) -> np.ndarray:
    """The image (1, 3, h, w) and its mirror image as one batch of 2 (the flip average's input)."""
    return np.concatenate([pixels, pixels[..., ::-1]])


def softmax(logits: np.ndarray, axis: int = 0) -> np.ndarray:
    """Softmax along `axis`, float32."""
    shifted = np.exp(logits - logits.max(axis=axis, keepdims=True))
    shifted /= shifted.sum(axis=axis, keepdims=True)
    return shifted


def probabilities(logits: np.ndarray) -> np.ndarray:
    """Class probabilities (classes, h, w) from the logits of one image (1, ...) or of it and its mirror
    image (2, ...), whose softmax probabilities are averaged."""
    probs = softmax(logits[0])
    if logits.shape[0] == 2:
        probs = (probs + softmax(logits[1])[..., ::-1]) / 2
    return probs


class ParserDetector:
    """Garment instances of the predicted class probabilities, per person (`models.parser.outfit`): dress
    or top + skirt per person, fragments of one garment merged, specks and unsure accessories dropped.

    Boxes are in pixels of the image passed to `detect`; masks are bool arrays of the image's size. Score
    is the mean probability of the garment's class inside it; garments scoring under `min_score` are
    dropped. Ordered by area x score, largest and most confident first: the first is the one to pre-select.
    The network runs on `runtime` (`models.runtime`); everything around it is numpy.
    """

    name = "garment-parser"

    def __init__(
        self,
        weights_path: Path = SHIPPED_PARSER,
        threads: int = 0,
        min_area_frac: float | None = None,
        flip: bool = SHIPPED_PARSER_FLIP,
        min_score: float = 0.0,
        runtime: str = DEFAULT_RUNTIME,
        rules: OutfitRules | None = None,
    ) -> None:
        rules = rules or OutfitRules()
        min_area_frac = rules.min_area_frac if min_area_frac is None else min_area_frac
        if threads < 0 or not 0.0 <= min_area_frac < 1.0:
            raise ValueError(
                f"threads must be >= 0 and min_area_frac in [0, 1); got {threads}, {min_area_frac}"
            )
        self.runtime = runtime
        self.weights_path = Path(weights_path)
        self.config = read_config(self.weights_path)
        check_config(self.config, self.weights_path)
        self.min_area_frac = min_area_frac
        self.flip = flip
        self.min_score = min_score
        self.rules = replace(rules, min_area_frac=min_area_frac)
        self._mean = np.asarray(self.config.mean, dtype=np.float32).reshape(1, 3, 1, 1)
        self._std = np.asarray(self.config.std, dtype=np.float32).reshape(1, 3, 1, 1)
        self._logits: Network = load_network(self.weights_path, runtime, threads, channels_last=True)

    @cached_property
    def network(self) -> GarmentParserNet:
        """The PyTorch network of the weights (loaded on first use; needs the `train` extra)."""
        require_torch("the garment parser's PyTorch network")
        from models.parser.network import load_network as load_torch_network

        return load_torch_network(self.weights_path)[0]

    def _pixels(self, image: Image.Image) -> np.ndarray:
        """Normalised (1, 3, h, w) network input at the network's input size."""
        height, width = self.config.input_size
        rgb = image.convert("RGB").resize((width, height), Image.Resampling.BILINEAR)
        pixels = (np.asarray(rgb, dtype=np.float32) / np.float32(255.0)).transpose(2, 0, 1)[None]
        return (pixels - self._mean) / self._std

    def class_probabilities(self, image: Image.Image) -> np.ndarray:
        """Softmax class probabilities (classes, h, w) at the network's input size (flip-averaged if set)."""
        pixels = self._pixels(image)
        return probabilities(self._logits(mirrored(pixels) if self.flip else pixels))

    def probabilities(self, image: Image.Image) -> torch.Tensor:
        """`class_probabilities` as a PyTorch tensor, for the benchmarks and training tools (needs torch)."""
        return require_torch("ParserDetector.probabilities").from_numpy(self.class_probabilities(image))

    def parse(self, image: Image.Image) -> Parse:
        probs = self.class_probabilities(image)
        return Parse(probs.argmax(axis=0).astype(np.int64), probs.max(axis=0))

    def detect(self, image: Image.Image) -> list[Garment]:
        instances = outfit_instances(self.class_probabilities(image), rules=self.rules)
        # Score filter first: full-size masks are built only for the garments we return (in their order).
        kept = [instance for instance in instances if round(instance.score, 4) >= self.min_score]
        return [self._to_garment(instance, image.size) for instance in kept]

    def _to_garment(self, instance: Instance, size: tuple[int, int]) -> Garment:
        width, height = size
        map_height, map_width = instance.mask.shape
        x0, y0, x1, y1 = instance.box
        box = (
            int(np.floor(x0 * width / map_width)),
            int(np.floor(y0 * height / map_height)),
            min(width, int(np.ceil(x1 * width / map_width))),
            min(height, int(np.ceil(y1 * height / map_height))),
        )
        # Nearest-neighbour upsampling of the map-sized mask, only inside the box (it is empty outside).
        bx0, by0, bx1, by1 = box
        rows = np.minimum((np.arange(by0, by1) + 0.5) * map_height / height, map_height - 1).astype(np.intp)
        cols = np.minimum((np.arange(bx0, bx1) + 0.5) * map_width / width, map_width - 1).astype(np.intp)
        mask = np.zeros((height, width), dtype=bool)
        mask[by0:by1, bx0:bx1] = instance.mask[rows[:, None], cols[None, :]]
        category = self.config.classes[instance.class_index]
        return Garment(box=box, category=category, score=round(instance.score, 4), mask=mask)
