"""Response models. Field names are a public contract: storefront and mobile clients parse them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from indexer.metadata import ItemRecord
from indexer.search import OutfitResult


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Match(_Strict):
    item_id: str
    score: float = Field(description="cosine similarity of the garment crop and the item image")
    title: str
    category: str
    brand: str
    price: float | None
    currency: str
    in_stock: bool
    url: str


class GarmentOut(_Strict):
    box: list[int] = Field(min_length=4, max_length=4, description="[x0, y0, x1, y1], upright upload pixels")
    category: str | None
    score: float
    matches: list[Match]


class SearchResponse(_Strict):
    garments: list[GarmentOut]
    image_size: list[int] = Field(description="[width, height] after EXIF orientation")
    timings_ms: dict[str, float]


class Item(_Strict):
    item_id: str
    title: str
    category: str
    brand: str
    price: float | None
    currency: str
    in_stock: bool
    url: str
    attributes: dict[str, str]


class Health(_Strict):
    status: str


class Ready(_Strict):
    status: str
    items: int
    model: str
    dimension: int
    index_created_at: str
    categories: list[str]


def match_from_record(record: ItemRecord, score: float) -> Match:
    return Match(
        item_id=record.item_id,
        score=round(score, 6),
        title=record.title,
        category=record.category,
        brand=record.brand,
        price=record.price,
        currency=record.currency,
        in_stock=record.in_stock,
        url=record.url,
    )


def item_from_record(record: ItemRecord) -> Item:
    return Item(**{name: getattr(record, name) for name in Item.model_fields})


def search_response(
    result: OutfitResult, size: tuple[int, int], timings_ms: dict[str, float]
) -> SearchResponse:
    return SearchResponse(
        garments=[
            GarmentOut(
                box=list(g.garment.box),
                category=g.garment.category,
                score=round(g.garment.score, 4),
                matches=[match_from_record(hit.item, hit.score) for hit in g.matches],
            )
            for g in result.garments
        ],
        image_size=list(size),
        timings_ms=timings_ms,
    )
