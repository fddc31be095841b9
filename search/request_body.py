"""The search request as typed data: the JSON body of `POST /v1/search` (and each entry of a batch), whose
option fields the multipart form and the CLI fill too (`search.query` parses their strings into these).

Three kinds of search, exactly one per request: an `image` (base64 or a URL the server fetches), a catalogue
`item_id` (more like this), or a `query_id` with `garment` and `offset` (the next page of a search already
made). Unknown fields are a 422 naming the accepted ones (StrictModel).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, model_validator

from search.responses import StrictModel

MAX_URL_CHARS = 2048
MAX_BATCH_REQUESTS = 16  # Google Cloud Vision's batch limit
FILTERS_EXAMPLE: dict[str, Any] = {
    "price_max": 80,
    "in_stock": True,
    "attributes": {"colour": ["red", "pink"]},
}


PROFILE_EXAMPLE: dict[str, Any] = {
    "colours": ["navy", "black"],
    "avoid_colours": ["orange"],
    "fits": ["loose"],
    "styles": ["casual"],
    "price_min": 20,
    "price_max": 120,
    "brands": ["acme"],
    "sizes": ["M"],
}


class PriceBand(StrictModel):
    price_min: float | None = Field(None, ge=0)
    price_max: float | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _price_band(self) -> PriceBand:
        if self.price_min is not None and self.price_max is not None and self.price_min > self.price_max:
            raise ValueError(f"price_min {self.price_min} is above price_max {self.price_max}")
        return self


class FiltersIn(PriceBand):
    """Hard filters, e.g. {"brand": ["acme"], "price_max": 50, "attributes": {"colour": "red"}}."""

    model_config = {"json_schema_extra": {"examples": [FILTERS_EXAMPLE]}}

    category: str | list[str] | None = Field(
        None, description="catalogue categories (GET /readyz lists them)"
    )
    brand: str | list[str] | None = None
    in_stock: bool | None = None
    gender: str | None = None
    attributes: dict[str, str | list[str]] = Field(
        default_factory=dict, description="attribute group -> a value or any of these values"
    )


class ProfileIn(PriceBand):
    """A shopper's style profile (the quiz's answers), worth at most `ranking.profile_max_boost` up or down:
    a boost, never a filter. Values are the taxonomy's (GET /v1/taxonomy): colours, fits (the fit group),
    styles (the style group); brands and sizes as the feed spells them."""

    model_config = {"json_schema_extra": {"examples": [PROFILE_EXAMPLE]}}

    colours: list[str] = Field(default_factory=list, max_length=20, description="colours the shopper likes")
    avoid_colours: list[str] = Field(
        default_factory=list, max_length=20, description="colours pushed down (softly: never filtered out)"
    )
    fits: list[str] = Field(default_factory=list, max_length=13)
    styles: list[str] = Field(default_factory=list, max_length=17)
    brands: list[Annotated[str, Field(max_length=100)]] = Field(default_factory=list, max_length=50)
    sizes: list[Annotated[str, Field(max_length=20)]] = Field(default_factory=list, max_length=20)


Region = Annotated[
    list[float],
    Field(
        min_length=4,
        max_length=4,
        description="[x0, y0, x1, y1] in pixels of the photo after EXIF orientation: search this box as the "
        "one garment (no detection; category from the classifier)",
        examples=[[120, 200, 380, 560]],
    ),
]


class SearchOptions(StrictModel):
    """The options of an image or item search (the multipart form has the same fields, as strings)."""

    top_k: int | None = Field(None, ge=1, description="matches per garment (at most FASHION_MAX_TOP_K)")
    min_score: float | None = Field(None, ge=-1, le=2, description="drop matches scoring under this")
    collapse_variants: bool | None = Field(
        None,
        description="one match per product group (the feed's item_group_id), at its best variant, listing "
        "the group's variants (default true); false: every variant is a match of its own",
    )
    category: str | None = Field(None, description="only match this catalogue category")
    filters: FiltersIn | None = None
    text: str | None = Field(None, description='a refinement, e.g. "in red, not striped"')
    weights: dict[str, float] | None = Field(
        None, description="attribute group weights", examples=[{"colour": 3, "pattern": 2}]
    )
    attribute_weight: float | None = Field(
        None, ge=0, le=1, description="0 = visual similarity only, 1 = attribute agreement only"
    )
    profile: ProfileIn | None = Field(None, description="a style profile given with the request")
    profile_id: str | None = Field(
        None,
        max_length=100,
        description="a stored style profile (POST /v1/profiles) to apply; 404 profile_not_found if unknown",
    )
    session_id: str | None = Field(
        None, description="a co-viewing session: it gets the photo and the results (404 if unknown)"
    )
    region: Region | None = None


class ImageIn(StrictModel):
    """The photo: base64 bytes, or an http(s) URL that the server fetches (public addresses only)."""

    base64: str | None = Field(None, description="the image file's bytes, base64 (standard alphabet)")
    url: str | None = Field(
        None, max_length=MAX_URL_CHARS, description="http(s) URL of the image", examples=["https://..."]
    )

    @model_validator(mode="after")
    def _one_source(self) -> ImageIn:
        if (self.base64 is None) == (self.url is None):
            raise ValueError("give exactly one of image.base64 and image.url")
        return self


PAGE_FIELDS = frozenset({"query_id", "garment", "offset", "top_k"})


class SearchBody(SearchOptions):
    """`POST /v1/search` as JSON: one of `image`, `item_id` or `query_id` (+ `garment`, `offset`)."""

    model_config = {
        "json_schema_extra": {
            "examples": [
                {"image": {"url": "https://shop.example/street.jpg"}, "top_k": 5, "min_score": 0.3},
                {"item_id": "sku-123", "top_k": 10},
                {"query_id": "q_...", "garment": 0, "offset": 5, "top_k": 5},
            ]
        }
    }

    image: ImageIn | None = None
    item_id: str | None = Field(None, description="more like this catalogue item (its stored vector)")
    query_id: str | None = Field(None, description="the next page of this search (its response's query_id)")
    garment: int | None = Field(None, ge=0, description="with query_id: which garment of that search")
    offset: int | None = Field(None, ge=0, description="with query_id: the garment's next_offset")

    @model_validator(mode="after")
    def _one_kind(self) -> SearchBody:
        kinds = [name for name in ("image", "item_id", "query_id") if getattr(self, name) is not None]
        if len(kinds) != 1:
            raise ValueError(
                "give exactly one of image, item_id or query_id"
                + (f" (got {', '.join(kinds)})" if kinds else "")
            )
        if self.query_id is not None:
            extra = sorted(set(self.model_fields_set) - PAGE_FIELDS)
            if extra or self.garment is None or self.offset is None:
                raise ValueError(
                    "a page request takes query_id, garment, offset and top_k only"
                    + (f" (not {', '.join(extra)})" if extra else " (garment and offset are required)")
                )
        elif self.garment is not None or self.offset is not None:
            raise ValueError("garment and offset page a search: send them with its query_id")
        if self.item_id is not None and self.region is not None:
            raise ValueError("region needs an image; an item_id search has none")
        return self


class BatchBody(StrictModel):
    """`POST /v1/search/batch`: up to 16 searches, answered in order."""

    requests: list[SearchBody] = Field(min_length=1, max_length=MAX_BATCH_REQUESTS)
