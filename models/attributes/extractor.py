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
from models.attributes.heads import COLOUR_SOURCES, blend_colour, head_guesses, model_groups
from models.attributes.taxonomy import Taxonomy
from models.attributes.zero_shot import ZeroShotScorer
from models.embedding import Embedder, HeadOutput
from models.garment import Garment

COLOUR_GROUP = "colour"


@dataclass(frozen=True)
class GarmentAttributes:
    values: dict[str, AttributeGuess]
    colours: list[ColourShare]
    unknown: tuple[str, ...]  # groups that apply to the garment's category but were not predicted


class AttributeExtractor:
    """Thread-safe once built. `zero_shot` must score vectors of the embedder the caller passes in;
    `head_groups` are the groups the embedder's attribute heads predict (their outputs come per call)."""

    def __init__(
        self,
        taxonomy: Taxonomy,
        zero_shot: ZeroShotScorer | None = None,
        head_groups: Sequence[str] = (),
        min_head_confidence: float = 0.5,
        colour_source: str = "auto",
    ) -> None:
        self.taxonomy = taxonomy
        self.zero_shot = zero_shot
        self.head_groups = tuple(head_groups)
        self.min_head_confidence = min_head_confidence
        self.colour_source = colour_source
        if colour_source not in (*COLOUR_SOURCES, "auto"):  # refused here, not per search
            raise ValueError(
                f"colour source must be auto or one of {', '.join(COLOUR_SOURCES)}, got {colour_source!r}"
            )

    @property
    def predicted_groups(self) -> tuple[str, ...]:
        extra = [g.name for g in self.zero_shot.groups(None)] if self.zero_shot else []
        return tuple(dict.fromkeys((COLOUR_GROUP, *self.head_groups, *extra)))

    def for_garments(
        self,
        image: Image.Image,
        garments: Sequence[Garment],
        vectors: np.ndarray | None = None,
        heads: Sequence[HeadOutput] | None = None,
    ) -> list[GarmentAttributes]:
        """Street photo: colour from each garment's mask (its box when the detector gave no mask; a
        whole-frame garment without a mask is a product-like shot: its foreground)."""
        results = []
        for index, garment in enumerate(garments):
            mask = garment.mask
            whole = mask is None and garment.box == (0, 0, *image.size)
            if whole:
                mask = foreground_mask(image)
            colours = garment_colours(image, garment.box, mask)
            vector = vectors[index] if vectors is not None else None
            head = heads[index] if heads is not None else None
            results.append(self._combine(colours, vector, garment.category, head, product=whole))
        return results

    def for_product(
        self,
        image: Image.Image,
        category: str | None,
        vector: np.ndarray | None = None,
        heads: HeadOutput | None = None,
    ) -> GarmentAttributes:
        """Catalogue product shot: colour from the pixels that differ from the backdrop (and the colour
        head, per `colour_source`), the other groups from the heads when the embedder has them. When the
        colour head alone decides (auto or model), the pixels' k-means is skipped: it is most of the cost of
        an index build."""
        head_only = heads is not None and "colour" in heads.labels and self.colour_source in ("auto", "model")
        colours = [] if head_only else garment_colours(image, None, foreground_mask(image))
        return self._combine(colours, vector, category, heads, product=True)

    def category_of(self, heads: HeadOutput) -> AttributeGuess | None:
        """The category head's answer (source "predicted") when it names a taxonomy category with at least
        `min_head_confidence`; None for "other" (not a garment) or when unsure."""
        if "category" not in heads.labels:
            return None
        value, probability = heads.best("category")
        if value not in self.taxonomy.categories or probability < self.min_head_confidence:
            return None
        return AttributeGuess(value, round(probability, 4), "predicted")

    def _combine(
        self,
        colours: list[ColourShare],
        vector: np.ndarray | None,
        category: str | None,
        heads: HeadOutput | None = None,
        product: bool = False,
    ) -> GarmentAttributes:
        values: dict[str, AttributeGuess] = {}
        source = self.colour_source
        if source == "auto":  # measured on held-out products: head 0.57, blend 0.51, pixels 0.37 (README)
            source = "model" if product else "blend"
        colour = blend_colour(colours, heads, source)
        if colour is not None:
            values[COLOUR_GROUP] = colour
        if heads is not None:
            values.update(head_guesses(heads, self.taxonomy, category, self.min_head_confidence))
        if self.zero_shot is not None and vector is not None:
            values.update(self.zero_shot.predict(vector, category))
        unknown = tuple(g.name for g in self.taxonomy.groups_for(category) if g.name not in values)
        return GarmentAttributes(values, colours, unknown)


def create_extractor(
    embedder: Embedder | None,
    taxonomy: Taxonomy | None = None,
    zero_shot_min_confidence: float = 0.4,
    heads: Embedder | None = None,
    min_head_confidence: float = 0.5,
    colour_source: str = "auto",
) -> AttributeExtractor:
    """Colour always; zero-shot groups too when `embedder` has an open_clip text tower; the groups of the
    attribute heads of `heads` (the embedder that runs them, usually the same one) when it has any."""
    from models.attributes.taxonomy import load_taxonomy

    taxonomy = taxonomy or load_taxonomy()
    zero_shot = None
    if embedder is not None and embedder.has_text_tower:
        zero_shot = ZeroShotScorer(embedder, taxonomy, zero_shot_min_confidence)
    groups = model_groups(heads.head_labels, taxonomy) if heads is not None else ()
    return AttributeExtractor(taxonomy, zero_shot, groups, min_head_confidence, colour_source)
