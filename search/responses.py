"""Response models and their building, shared by HTTP and the CLI. Field names are a public contract:
storefront and mobile clients parse them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field

from indexer.metadata import ITEM_FIELDS, ItemRecord
from models.attributes.guess import AttributeGuess
from models.attributes.refinement import Refinement
from search.ranking import Agreement, RankedItem
from search.searcher import GarmentMatches, OutfitResult


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


class VariantOut(StrictModel):
    item_id: str
    colour: str | None = Field(description="the variant's colour attribute, when it has one")
    size: str | None = Field(description="the variant's size as the feed gives it")
    in_stock: bool
    price: float | None


class ProfileMatchOut(StrictModel):
    explanation: str = Field(examples=["matches your style: navy, loose fit"])
    matched: list[str] = Field(description="the profile's values the item has")
    avoided: list[str] = Field(description="values the shopper avoids that the item has")


class Match(ItemFields):
    group_id: str | None = Field(None, description="the product group (the feed's item_group_id), if any")
    variants: list[VariantOut] = Field(
        default_factory=list,
        description="every item of the match's product group (colours, sizes), when results are collapsed "
        "(collapse_variants, the default); the match itself is the best-matching variant among them",
    )
    matched_image: int = Field(
        0, description="which of the item's images matched best: 0 = the main image, 1.. = its further images"
    )
    matched_image_link: str | None = Field(
        None, description="the feed's link or path of the image that matched best (null: the main image)"
    )
    image_url: str | None = Field(
        None,
        description="the item's image: the feed's image link when it has one, else this service's "
        "/v1/items/{item_id}/image when images are served (FASHION_IMAGE_ROOT), else null",
    )
    score: float = Field(
        description="(1 - attribute_weight) * visual_score + attribute_weight * "
        "attribute_score + profile_boost"
    )
    visual_score: float = Field(description="cosine similarity of the garment crop and the item image")
    attribute_score: float = Field(description="weighted attribute agreement in [0, 1]; 0.5 = no evidence")
    profile_boost: float = Field(
        description="what the shopper's style profile adds (or, for avoided values, takes away); at most "
        "ranking.profile_max_boost either way; 0 without a profile"
    )
    profile_match: ProfileMatchOut | None = Field(
        None, description="why the profile moved this match; null when it did not"
    )
    matched: list[AgreementOut]
    mismatched: list[AgreementOut]


class Item(ItemFields):
    extra_attributes: dict[str, str] = Field(description="feed attributes outside the taxonomy, as given")


class GarmentOut(StrictModel):
    box: list[int] | None = Field(
        min_length=4,
        max_length=4,
        description="[x0, y0, x1, y1], upright upload pixels (null for a search by item_id)",
    )
    category: str | None
    score: float
    confident: bool = Field(
        True,
        description="false when even the best match scores under FASHION_CONFIDENT_SCORE (a street photo's "
        "garment) or FASHION_CONFIDENT_SCORE_PRODUCT (a product photo, an item_id search), calibrated on "
        "validation photos: show 'no close match' rather than these matches",
    )
    next_offset: int | None = Field(
        None,
        description="offset of the next page of this garment's matches (POST /v1/search with query_id, "
        "garment and offset); null when there are no more",
    )
    attributes: dict[str, AttributeOut]
    colours: list[ColourOut]
    unknown_attributes: list[str] = Field(description="groups that apply but the loaded models cannot tell")
    refinement: RefinementOut | None
    matches: list[Match]


class SearchResponse(StrictModel):
    query_id: str | None = Field(
        None, description="pages this search's matches for FASHION_QUERY_CACHE_TTL_S (null from the CLI)"
    )
    garments: list[GarmentOut]
    image_size: list[int] | None = Field(
        description="[width, height] after EXIF orientation (null for a search by item_id)"
    )
    timings_ms: dict[str, float]


@dataclass(frozen=True)
class Answering:
    """How a search result becomes a response: its query id, the confident threshold, whether item images
    are served here, and (for a page) which garment from which offset."""

    query_id: str | None = None
    confident_score: float = 0.0  # a garment of a street photo, or a region
    confident_score_product: float = 0.0  # a product photo's one garment, or a search by item
    images_served: bool = False
    garment: int | None = None  # a page: only this garment
    offset: int = 0


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


def variant_out(record: ItemRecord) -> VariantOut:
    colour = record.attributes.get("colour")
    size = record.extra_attributes.get("size") or (
        record.attributes["size"].value if "size" in record.attributes else None
    )
    return VariantOut(
        item_id=record.item_id,
        colour=colour.value if colour is not None else None,
        size=size,
        in_stock=record.in_stock,
        price=record.price,
    )


def match_out(ranked: RankedItem, images_served: bool = False) -> Match:
    images = ranked.item.images
    return Match(
        **ItemFields.fields_of(ranked.item),
        group_id=ranked.item.group_id or None,
        variants=[variant_out(record) for record in ranked.variants],
        matched_image=ranked.image,
        matched_image_link=images[ranked.image] if 0 < ranked.image < len(images) else None,
        image_url=image_url(ranked.item, images_served),
        score=ranked.score,
        visual_score=ranked.visual_score,
        attribute_score=ranked.attribute_score,
        profile_boost=ranked.profile_boost,
        profile_match=_profile_match(ranked),
        matched=_agreements(ranked.matched),
        mismatched=_agreements(ranked.mismatched),
    )


def _profile_match(ranked: RankedItem) -> ProfileMatchOut | None:
    fit = ranked.profile_match
    if fit.explanation is None:
        return None
    return ProfileMatchOut(explanation=fit.explanation, matched=list(fit.matched), avoided=list(fit.avoided))


def image_url(record: ItemRecord, images_served: bool) -> str | None:
    if record.image.startswith(("https://", "http://")):
        return record.image
    if images_served and record.image:
        return f"/v1/items/{quote(record.item_id, safe='')}/image"
    return None


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
    result: OutfitResult,
    size: tuple[int, int] | None,
    timings_ms: dict[str, float],
    answering: Answering | None = None,
) -> SearchResponse:
    """The response to a search (every garment's first page) or to a page request (`answering.garment`:
    that garment only, whose `matches` hold the page that starts at `answering.offset`)."""
    how = answering or Answering()

    def threshold(g: GarmentMatches) -> float:
        product = g.garment.product_shot or result.query_item is not None
        return how.confident_score_product if product else how.confident_score

    garments = []
    for index, g in enumerate(result.garments):
        if how.garment is not None and index != how.garment:
            continue
        offset = how.offset if how.garment is not None else 0
        matches = g.matches  # the first page, or (answering a page request) the requested page
        next_offset = g.pool.next_offset(offset, len(matches)) if g.pool is not None and matches else None
        garments.append(
            GarmentOut(
                box=None if result.query_item is not None else list(g.garment.box),
                category=g.garment.category,
                score=round(g.garment.score, 4),
                confident=g.best_score is not None and g.best_score >= threshold(g),
                next_offset=next_offset,
                attributes=attributes_out(g.attributes.values),
                colours=[ColourOut(name=c.name, fraction=c.fraction) for c in g.attributes.colours],
                unknown_attributes=list(g.attributes.unknown),
                refinement=refinement_out(g.refinement),
                matches=[match_out(ranked, how.images_served) for ranked in matches],
            )
        )
    return SearchResponse(
        query_id=how.query_id,
        garments=garments,
        image_size=list(size) if size is not None else None,
        timings_ms=timings_ms,
    )
