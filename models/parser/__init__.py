"""Garment parser: semantic segmentation of street photos into the retrieval taxonomy, then instances.

`ParserDetector` (models.parser.detector) implements `models.detector.GarmentDetector`; its instances come
from `models.parser.outfit.outfit_instances` (per person, on the class probabilities), while
`models.parser.instances.extract_instances` is the plain component rule (parser v2, benchmark ground truth).
"""

from models.parser.taxonomy import GARMENT_CLASSES, PARSER_CLASSES

__all__ = ["GARMENT_CLASSES", "PARSER_CLASSES"]
