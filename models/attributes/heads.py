"""Attributes from trained attribute heads (fashion-net-v3): source "model", with the head's calibrated
probability as confidence. A head's value is used only for groups that apply to the garment's category and
only when its probability reaches `min_confidence`; below that the group stays unknown (never a guess).

Colour has two sources: the garment's own pixels (k-means shares of its mask or foreground) and the colour
head. `colour_source` picks one or blends them (see `blend_colour`); the extractor's default, "auto", takes
the head alone for a whole-frame product photo and the blend for a street garment with its parser mask."""

from __future__ import annotations

from collections.abc import Mapping

from models.attributes.colour import ColourShare
from models.attributes.guess import AttributeGuess
from models.attributes.taxonomy import Taxonomy
from models.embedding import HeadOutput

COLOUR_SOURCES = ("pixels", "model", "blend")
# Heads whose labels are values of the taxonomy group of the same name (colour is handled apart).
MODEL_GROUPS = ("pattern", "sleeve_length", "footwear_type", "style", "gender", "season")


def model_groups(head_labels: Mapping[str, tuple[str, ...]], taxonomy: Taxonomy) -> tuple[str, ...]:
    """The taxonomy groups the heads can predict."""
    return tuple(g for g in MODEL_GROUPS if g in head_labels and g in taxonomy.groups)


def head_guesses(
    heads: HeadOutput, taxonomy: Taxonomy, category: str | None, min_confidence: float
) -> dict[str, AttributeGuess]:
    applies = {group.name for group in taxonomy.groups_for(category)}
    found = {}
    for group in model_groups(heads.labels, taxonomy):
        if group not in applies:
            continue
        value, probability = heads.best(group)
        if probability >= min_confidence:
            found[group] = AttributeGuess(value, round(probability, 4), "model")
    return found


def blend_colour(
    shares: list[ColourShare], heads: HeadOutput | None, source: str, model_weight: float = 0.5
) -> AttributeGuess | None:
    """The garment's colour from its pixel shares, the colour head, or both: the blend scores each colour
    (1 - w) * pixel share + w * head probability and keeps the top one (the next as an alternative)."""
    if source not in COLOUR_SOURCES:
        raise ValueError(f"colour source must be one of {', '.join(COLOUR_SOURCES)}, got {source!r}")
    if heads is None or "colour" not in heads.labels or source == "pixels":
        if not shares:
            return None
        alternatives = tuple(share.name for share in shares[1:])
        return AttributeGuess(
            shares[0].name, round(min(1.0, shares[0].fraction), 3), "predicted", alternatives
        )
    weight = 1.0 if source == "model" or not shares else model_weight
    scores: dict[str, float] = {}
    for name, probability in heads.ranked("colour"):
        scores[name] = weight * probability
    for share in shares:
        scores[share.name] = scores.get(share.name, 0.0) + (1 - weight) * share.fraction
    ranked = sorted(scores.items(), key=lambda item: -item[1])
    (best, score), second = ranked[0], ranked[1] if len(ranked) > 1 else None
    alternatives = (second[0],) if second is not None and second[1] >= 0.5 * score else ()
    return AttributeGuess(best, round(min(1.0, score), 4), "model", alternatives)
