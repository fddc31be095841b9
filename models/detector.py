"""Garment detection interface. The trained street-photo parser plugs in behind `GarmentDetector`."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from models.garment import Garment, GarmentDetector
from models.parser.detector import ParserDetector
from models.runtime import DEFAULT_RUNTIME
from models.spec import SHIPPED_PARSER

__all__ = ["DETECTOR_KINDS", "FallbackDetector", "FullFrameDetector", "Garment", "GarmentDetector"]


class FullFrameDetector:
    """One garment = the whole image. Right for catalogue product shots; a placeholder for street photos."""

    name = "full-frame"

    def detect(self, image: Image.Image) -> list[Garment]:
        width, height = image.size
        return [Garment(box=(0, 0, width, height), category=None, score=1.0)]


class FallbackDetector:
    """Use `primary`; when it finds no garment (a product shot, a close-up), fall back to `fallback`."""

    def __init__(self, primary: GarmentDetector, fallback: GarmentDetector) -> None:
        self.primary, self.fallback = primary, fallback
        self.name = primary.name

    def detect(self, image: Image.Image) -> list[Garment]:
        return self.primary.detect(image) or self.fallback.detect(image)


DETECTOR_KINDS = ("garment-parser", FullFrameDetector.name)


def create_detector(
    kind: str,
    weights: Path | None = None,
    threads: int = 0,
    min_score: float = 0.0,
    flip: bool = True,
    runtime: str = DEFAULT_RUNTIME,
) -> GarmentDetector:
    """ "garment-parser": the shipped street-photo parser (full frame when it finds nothing), run by
    `runtime` ("torch" or "onnx"); "full-frame": one garment = the whole image."""
    if kind == FullFrameDetector.name:
        return FullFrameDetector()
    if kind == "garment-parser":
        parser = ParserDetector(
            weights or SHIPPED_PARSER, threads=threads, min_score=min_score, flip=flip, runtime=runtime
        )
        return FallbackDetector(parser, FullFrameDetector())
    raise ValueError(f"unknown detector {kind!r}; available: {', '.join(DETECTOR_KINDS)}")
