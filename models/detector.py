"""Garment detection interface. The trained street-photo parser plugs in behind `GarmentDetector`."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from models.embedding import Embedder, HeadOutput
from models.errors import ConfigError
from models.garment import Garment, GarmentDetector
from models.parser.detector import ParserDetector
from models.runtime import DEFAULT_RUNTIME
from models.spec import PRODUCT_GATE_THRESHOLD, SHIPPED_PARSER, SHIPPED_PARSER_FLIP

__all__ = [
    "DETECTOR_KINDS",
    "FallbackDetector",
    "FullFrameDetector",
    "Garment",
    "GarmentDetector",
    "ProductGate",
    "head_category",
]


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


class ProductGate:
    """A product photo (one item on a plain or studio background, no person or a cropped one) is one
    garment: the whole frame, named by the category head, never the parser's fragments. The gate head of
    `heads` (fashion-net-v3) decides; anything it does not call a product goes to `street`."""

    def __init__(
        self, street: GarmentDetector, heads: Embedder, threshold: float = PRODUCT_GATE_THRESHOLD
    ) -> None:
        if "gate" not in heads.head_labels or "category" not in heads.head_labels:
            raise ConfigError(f"{heads.name} has no product gate head; use a fashion-net-v3 embedder")
        if not 0.0 < threshold <= 1.0:
            raise ConfigError(f"product gate threshold must be in (0, 1], got {threshold}")
        self.street, self.heads, self.threshold = street, heads, threshold
        self.name = street.name

    def product_probability(self, image: Image.Image) -> tuple[float, str | None]:
        """P(product shot) and the category head's answer (None for a non-garment such as a watch)."""
        _, outputs = self.heads.describe_images([image])
        head = outputs[0] if outputs else None
        if head is None:
            return 0.0, None
        product = float(head.probabilities["gate"][head.labels["gate"].index("product")])
        return product, head_category(head)

    def detect(self, image: Image.Image) -> list[Garment]:
        product, category = self.product_probability(image)
        if product >= self.threshold:
            width, height = image.size
            box = (0, 0, width, height)
            return [Garment(box=box, category=category, score=round(product, 4), product_shot=True)]
        return self.street.detect(image)


def head_category(head: HeadOutput | None) -> str | None:
    """What the category head (fashion-net-v3) calls one image or crop: its most probable label; None for
    "other" (not a garment, such as a watch) and for an embedder without a category head."""
    if head is None or "category" not in head.labels:
        return None
    category, _ = head.best("category")
    return None if category == "other" else category


DETECTOR_KINDS = ("garment-parser", FullFrameDetector.name)


def create_detector(
    kind: str,
    weights: Path | None = None,
    threads: int = 0,
    min_score: float = 0.0,
    flip: bool = SHIPPED_PARSER_FLIP,
    runtime: str = DEFAULT_RUNTIME,
    gate: Embedder | None = None,
    gate_threshold: float = PRODUCT_GATE_THRESHOLD,
) -> GarmentDetector:
    """ "garment-parser": the shipped street-photo parser (full frame when it finds nothing), run by
    `runtime` ("torch" or "onnx"), behind the product gate of `gate` when given (a fashion-net-v3
    embedder); "full-frame": one garment = the whole image."""
    if kind == FullFrameDetector.name:
        return FullFrameDetector()
    if kind == "garment-parser":
        parser = ParserDetector(
            weights or SHIPPED_PARSER, threads=threads, min_score=min_score, flip=flip, runtime=runtime
        )
        street = FallbackDetector(parser, FullFrameDetector())
        return ProductGate(street, gate, gate_threshold) if gate is not None else street
    raise ValueError(f"unknown detector {kind!r}; available: {', '.join(DETECTOR_KINDS)}")
