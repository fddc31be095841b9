"""Garment parser: semantic segmentation of street photos into the retrieval taxonomy, then instances.

`ParserDetector` (models.parser.detector) implements `models.detector.GarmentDetector`.
"""

from models.parser.taxonomy import GARMENT_CLASSES, PARSER_CLASSES

__all__ = ["GARMENT_CLASSES", "PARSER_CLASSES"]
