"""What a garment detector returns, and the interface every detector implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Garment:
    """One detected garment. `box` is [x0, y0, x1, y1] in pixels of the upright image."""

    box: tuple[int, int, int, int]
    category: str | None
    score: float
    mask: np.ndarray | None = None
    product_shot: bool = False  # the whole photo is one product (the product gate said so), not a scene


class GarmentDetector(Protocol):
    @property
    def name(self) -> str: ...

    def detect(self, image: Image.Image) -> list[Garment]: ...
