from __future__ import annotations

import pytest
from PIL import Image

from models.detector import FullFrameDetector, create_detector


def test_full_frame_detector_returns_whole_image() -> None:
    garments = FullFrameDetector().detect(Image.new("RGB", (123, 45)))
    assert len(garments) == 1
    assert garments[0].box == (0, 0, 123, 45) and garments[0].category is None and garments[0].score == 1.0


def test_unknown_detector_is_a_clear_error() -> None:
    assert create_detector("full-frame").name == "full-frame"
    with pytest.raises(ValueError, match="unknown detector 'yolo'"):
        create_detector("yolo")


def test_parser_flip_is_a_setting() -> None:
    from models.detector import FallbackDetector, create_detector

    single = create_detector("garment-parser")  # the shipped v3 runs without the mirror average
    flipped = create_detector("garment-parser", flip=True)
    assert isinstance(flipped, FallbackDetector) and isinstance(single, FallbackDetector)
    assert flipped.primary.flip is True and single.primary.flip is False  # type: ignore[attr-defined]
