"""Attributes of a garment: colour from its own pixels, other groups from the open_clip text tower.

With only the shipped models there is no text tower, so every group but colour is reported as unknown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from models.attributes.colour import ColourShare, garment_colours
from models.attributes.foreground import foreground_mask
from models.attributes.guess import AttributeGuess
from models.attributes.taxonomy import Taxonomy
from models.attributes.zero_shot import ZeroShotScorer
from models.embedding import Embedder
from models.garment import Garment

COLOUR_GROUP = "colour"


@dataclass(frozen=True)
class GarmentAttributes:
    values: dict[str, AttributeGuess]
    colours: list[ColourShare]
    unknown: tuple[str, ...]  # groups that apply to the garment's category but were not predicted


class AttributeExtractor:
    """Thread-safe once built. `zero_shot` must score vectors of the embedder the caller passes in."""

    def __init__(self, taxonomy: Taxonomy, zero_shot: ZeroShotScorer | None = None) -> None:
        self.taxonomy = taxonomy
        self.zero_shot = zero_shot

    @property
    def predicted_groups(self) -> tuple[str, ...]:
        extra = [g.name for g in self.zero_shot.groups(None)] if self.zero_shot else []
        return (COLOUR_GROUP, *extra)

    def for_garments(
        self, image: Image.Image, garments: Sequence[Garment], vectors: np.ndarray | None = None
    ) -> list[GarmentAttributes]:
        """Street photo: colour from each garment's mask (its box when the detector gave no mask; a
        whole-frame garment without a mask is a product-like shot: its foreground)."""
        results = []
        for index, garment in enumerate(garments):
            mask = garment.mask
            if mask is None and garment.box == (0, 0, *image.size):
                mask = foreground_mask(image)
            colours = garment_colours(image, garment.box, mask)
            vector = vectors[index] if vectors is not None else None
            results.append(self._combine(colours, vector, garment.category))
        return results

    def for_product(
        self, image: Image.Image, category: str | None, vector: np.ndarray | None = None
    ) -> GarmentAttributes:
        """Catalogue product shot: colour from the pixels that differ from the backdrop."""
        colours = garment_colours(image, None, foreground_mask(image))
        return self._combine(colours, vector, category)

    def _combine(
        self, colours: list[ColourShare], vector: np.ndarray | None, category: str | None
    ) -> GarmentAttributes:
        values: dict[str, AttributeGuess] = {}
        if colours:
            values[COLOUR_GROUP] = AttributeGuess(
                colours[0].name,
                round(min(1.0, colours[0].fraction), 3),
                "predicted",
                tuple(share.name for share in colours[1:]),
            )
        if self.zero_shot is not None and vector is not None:
            values.update(self.zero_shot.predict(vector, category))
        unknown = tuple(g.name for g in self.taxonomy.groups_for(category) if g.name not in values)
        return GarmentAttributes(values, colours, unknown)


def create_extractor(
    embedder: Embedder | None, taxonomy: Taxonomy | None = None, zero_shot_min_confidence: float = 0.4
) -> AttributeExtractor:
    """Colour always; zero-shot groups too when `embedder` has an open_clip text tower."""
    from models.attributes.taxonomy import load_taxonomy

    taxonomy = taxonomy or load_taxonomy()
    zero_shot = None
    if embedder is not None and embedder.has_text_tower:
        zero_shot = ZeroShotScorer(embedder, taxonomy, zero_shot_min_confidence)
    return AttributeExtractor(taxonomy, zero_shot)
