"""Response models and their building, shared by HTTP and the CLI. Field names are a public contract:
storefront and mobile clients parse them."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

from indexer.metadata import ITEM_FIELDS, ItemRecord
from models.attributes.guess import AttributeGuess
from models.attributes.refinement import Refinement
from search.ranking import Agreement, RankedItem
from search.searcher import OutfitResult


class StrictModel(BaseModel):
    """Every request and response schema: unknown fields are an error, never silently dropped."""

    model_config = ConfigDict(extra="forbid")


class AttributeOut(StrictModel):
    value: str
    confidence: float = Field(
        description="1 for feed values; the model's probability or colour share otherwise"
    )
    source: str = Field(description="feed, predicted (pixels, zero-shot), model (an attribute head) or text")
    alternatives: list[str] = Field(default_factory=list, description="further values (second colour)")


class AgreementOut(StrictModel):
    group: str
    value: str = Field(description="the item's value")
    query: str = Field(description="what the garment (or the shopper's text) asked for")
    source: str = Field(description="where the item's value came from: feed, predicted or model")


class ColourOut(StrictModel):
    name: str
    fraction: float = Field(description="share of the garment's pixels")


class RefinementOut(StrictModel):
    wanted: dict[str, list[str]]
    unwanted: dict[str, list[str]]
    unmatched: list[str] = Field(description="words of `text` that name no attribute value")


class ItemFields(StrictModel):
    """A catalogue item as clients see it (the fields of `indexer.metadata.ITEM_FIELDS` plus attributes)."""

    item_id: str
    title: str
    category: str
    brand: str
    price: float | None
    currency: str
    in_stock: bool
    url: str
    attributes: dict[str, AttributeOut]

    @staticmethod
    def fields_of(record: ItemRecord) -> dict[str, object]:
        return {
            **{name: getattr(record, name) for name in ITEM_FIELDS},
            "attributes": attributes_out(record.attributes),
        }


class Match(ItemFields):
    score: float = Field(
        description="(1 - attribute_weight) * visual_score + attribute_weight * "
        "attribute_score + profile_boost"
    )
    visual_score: float = Field(description="cosine similarity of the garment crop and the item image")
    attribute_score: float = Field(description="weighted attribute agreement in [0, 1]; 0.5 = no evidence")
    profile_boost: float
    matched: list[AgreementOut]
    mismatched: list[AgreementOut]


class Item(ItemFields):
    extra_attributes: dict[str, str] = Field(description="feed attributes outside the taxonomy, as given")


class GarmentOut(StrictModel):
    box: list[int] = Field(min_length=4, max_length=4, description="[x0, y0, x1, y1], upright upload pixels")
    category: str | None
    score: float
    attributes: dict[str, AttributeOut]
    colours: list[ColourOut]
    unknown_attributes: list[str] = Field(description="groups that apply but the loaded models cannot tell")
    refinement: RefinementOut | None
    matches: list[Match]


class SearchResponse(StrictModel):
    garments: list[GarmentOut]
    image_size: list[int] = Field(description="[width, height] after EXIF orientation")
    timings_ms: dict[str, float]


def attributes_out(values: Mapping[str, AttributeGuess]) -> dict[str, AttributeOut]:
    return {
        group: AttributeOut(
            value=guess.value,
            confidence=round(guess.confidence, 4),
            source=guess.source,
            alternatives=list(guess.alternatives),
        )
        for group, guess in values.items()
    }


def _agreements(found: list[Agreement]) -> list[AgreementOut]:
    return [
        AgreementOut(group=a.group, value=a.item_value, query=a.query_value, source=a.source) for a in found
    ]


def match_out(ranked: RankedItem) -> Match:
    return Match(
        **ItemFields.fields_of(ranked.item),
        score=ranked.score,
        visual_score=ranked.visual_score,
        attribute_score=ranked.attribute_score,
        profile_boost=ranked.profile_boost,
        matched=_agreements(ranked.matched),
        mismatched=_agreements(ranked.mismatched),
    )


def item_from_record(record: ItemRecord) -> Item:
    return Item(**ItemFields.fields_of(record), extra_attributes=record.extra_attributes)


def refinement_out(refinement: Refinement | None) -> RefinementOut | None:
    if refinement is None:
        return None
    return RefinementOut(
        wanted={g: sorted(v) for g, v in refinement.wanted.items()},
        unwanted={g: sorted(v) for g, v in refinement.unwanted.items()},
        unmatched=list(refinement.unmatched),
    )


def search_response(
    result: OutfitResult, size: tuple[int, int], timings_ms: dict[str, float]
) -> SearchResponse:
    return SearchResponse(
        garments=[
            GarmentOut(
                box=list(g.garment.box),
                category=g.garment.category,
                score=round(g.garment.score, 4),
                attributes=attributes_out(g.attributes.values),
                colours=[ColourOut(name=c.name, fraction=c.fraction) for c in g.attributes.colours],
                unknown_attributes=list(g.attributes.unknown),
                refinement=refinement_out(g.refinement),
                matches=[match_out(ranked) for ranked in g.matches],
            )
            for g in result.garments
        ],
        image_size=list(size),
        timings_ms=timings_ms,
    )
