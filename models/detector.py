"""Garment detection interface. The trained street-photo parser plugs in behind `GarmentDetector`."""

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


class GarmentDetector(Protocol):
    @property
    def name(self) -> str: ...

    def detect(self, image: Image.Image) -> list[Garment]: ...


class FullFrameDetector:
    """One garment = the whole image. Right for catalogue product shots; a placeholder for street photos."""

    name = "full-frame"

    def detect(self, image: Image.Image) -> list[Garment]:
        width, height = image.size
        return [Garment(box=(0, 0, width, height), category=None, score=1.0)]


def create_detector(kind: str) -> GarmentDetector:
    if kind == FullFrameDetector.name:
        return FullFrameDetector()
    raise ValueError(f"unknown detector {kind!r}; available: {FullFrameDetector.name}")
