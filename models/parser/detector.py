"""`ParserDetector`: garments in a street photo from the trained garment parser (semantic segmentation)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from models.garment import Garment
from models.parser.instances import Instance
from models.parser.network import load_network
from models.parser.outfit import OutfitRules, outfit_instances
from models.runtime import DEFAULT_RUNTIME, Network, compile_network
from models.spec import SHIPPED_PARSER, SHIPPED_PARSER_FLIP


@dataclass(frozen=True)
class Parse:
    """Network output for one image at the network's input resolution."""

    class_map: np.ndarray  # (h, w) int64 class indices
    confidence: np.ndarray  # (h, w) float32 probability of the predicted class


def mirrored(pixels: torch.Tensor) -> torch.Tensor:
    """The image and its mirror image as one batch of 2 (the flip average's input)."""
    return torch.cat([pixels, pixels.flip(-1)])


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Class probabilities (classes, h, w) from the logits of one image (1, ...) or of it and its mirror
    image (2, ...), whose softmax probabilities are averaged."""
    probs = F.softmax(logits[0], dim=0)
    if logits.shape[0] == 2:
        probs = (probs + F.softmax(logits[1], dim=0).flip(-1)) / 2
    return probs


class _Mirrored(nn.Module):
    """The network over the image and its mirror image, exported to ONNX as one graph."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.network(mirrored(pixels))


class ParserDetector:
    """Garment instances of the predicted class probabilities, per person (`models.parser.outfit`): dress
    or top + skirt per person, fragments of one garment merged, specks and unsure accessories dropped.

    Boxes are in pixels of the image passed to `detect`; masks are bool arrays of the image's size. Score
    is the mean probability of the garment's class inside it; garments scoring under `min_score` are
    dropped. Ordered by area x score, largest and most confident first: the first is the one to pre-select.
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
        self.network, self.config = load_network(Path(weights_path))
        self.min_area_frac = min_area_frac
        self.flip = flip
        self.min_score = min_score
        self.rules = replace(rules, min_area_frac=min_area_frac)
        self._mean = torch.tensor(self.config.mean).view(1, 3, 1, 1)
        self._std = torch.tensor(self.config.std).view(1, 3, 1, 1)
        self._logits = self._load_logits(threads)

    def _load_logits(self, threads: int) -> Network:
        """Normalised pixels (1, 3, h, w) -> logits of the image (and its mirror image when `flip`)."""
        network = _Mirrored(self.network) if self.flip else self.network
        example = self._pixels(Image.new("RGB", (8, 8)))
        return compile_network(network, self.runtime, threads, example, "logits", channels_last=True)

    def _pixels(self, image: Image.Image) -> torch.Tensor:
        """Normalised (1, 3, h, w) network input at the network's input size."""
        height, width = self.config.input_size
        rgb = image.convert("RGB").resize((width, height), Image.Resampling.BILINEAR)
        pixels = torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
        return ((pixels - self._mean) / self._std).contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def probabilities(self, image: Image.Image) -> torch.Tensor:
        """Softmax class probabilities (classes, h, w) at the network's input size (flip-averaged if set)."""
        return probabilities(self._logits(self._pixels(image)))

    def parse(self, image: Image.Image) -> Parse:
        confidence, class_map = self.probabilities(image).max(dim=0)
        return Parse(class_map.numpy(), confidence.numpy())

    def detect(self, image: Image.Image) -> list[Garment]:
        instances = outfit_instances(self.probabilities(image).numpy(), rules=self.rules)
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
