"""Search options from the multipart form and the CLI's flags: JSON-valued fields (`filters`, `weights`,
`profile`, `region`) are parsed and validated here so every mistake is a 422 naming the field, before any
model runs (a region is checked against the image's size once it is decoded: `search.searcher.region_box`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, Field, ValidationError, model_validator

from indexer.filters import build_filters
from models.attributes.refinement import MAX_TEXT_CHARS
from models.attributes.taxonomy import Taxonomy
from models.errors import shown
from search.errors import InvalidRequestError
from search.ranking import Profile, check_group_weights
from search.responses import StrictModel
from search.searcher import Region, SearchRequest, checked_region
from search.settings import Settings

Model = TypeVar("Model", bound=BaseModel)
MAX_JSON_CHARS = 16_384  # of one JSON form field (filters, weights, profile)
MAX_JSON_DEPTH = 8  # the deepest real option is filters.attributes.<group>: [values], depth 3
MAX_NUMBER_CHARS = 40  # digits of one JSON number
REGION_FORMAT = "a JSON array of 4 numbers [x0, y0, x1, y1] (pixels of the photo after EXIF orientation)"


class PriceBand(StrictModel):
    price_min: float | None = Field(None, ge=0)
    price_max: float | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _price_band(self) -> PriceBand:
        if self.price_min is not None and self.price_max is not None and self.price_min > self.price_max:
            raise ValueError(f"price_min {self.price_min} is above price_max {self.price_max}")
        return self


class FiltersIn(PriceBand):
    """`filters` form field, e.g. {"brand": ["acme"], "price_max": 50, "attributes": {"colour": "red"}}."""

    category: str | list[str] | None = None
    brand: str | list[str] | None = None
    in_stock: bool | None = None
    gender: str | None = None
    attributes: dict[str, str | list[str]] = Field(default_factory=dict)


class ProfileIn(PriceBand):
    """`profile` form field: a shopper's preferences, worth at most `ranking.profile_max_boost`."""

    brands: list[str] = Field(default_factory=list, max_length=50)
    colours: list[str] = Field(default_factory=list, max_length=20)


def parse_json_field(name: str, raw: str | None, model: type[Model]) -> Model | None:
    value = load_json(name, raw)
    if value is None:
        return None
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or name}: {error['msg']}" for error in exc.errors()
        )
        raise InvalidRequestError(f"{name}: {problems}") from None


def parse_weights(raw: str | None) -> dict[str, float] | None:
    weights = load_json("weights", raw)
    if weights is None:
        return None
    if not isinstance(weights, dict) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in weights.values()
    ):
        raise InvalidRequestError('weights must be a JSON object of group -> number, e.g. {"colour": 3}')
    try:
        return check_group_weights({str(k): float(v) for k, v in weights.items()})
    except ValueError as exc:
        raise InvalidRequestError(f"weights: {exc}") from None


def parse_region(raw: str | None) -> Region | None:
    """The `region` form field (None when empty): 4 finite numbers with x0 < x1 and y0 < y1."""
    region = load_json("region", raw)
    if region is None:
        return None
    if not isinstance(region, list) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in region
    ):
        raise InvalidRequestError(f"region must be {REGION_FORMAT}, got {shown(region)}")
    if len(region) != 4:
        raise InvalidRequestError(f"region must be {REGION_FORMAT}, got {len(region)} numbers")
    return checked_region(region)


def load_json(name: str, raw: str | None) -> Any:
    """A JSON form field within MAX_JSON_CHARS, MAX_JSON_DEPTH and MAX_NUMBER_CHARS (None when empty): deep
    nesting would exhaust the parser's recursion, a 5,000-digit number its int conversion; both are a 422."""
    if raw is None or not raw.strip():
        return None
    if len(raw) > MAX_JSON_CHARS:
        raise InvalidRequestError(f"{name} is {len(raw)} characters long; the limit is {MAX_JSON_CHARS}")
    if json_depth(raw) > MAX_JSON_DEPTH:
        raise InvalidRequestError(f"{name} nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(raw, parse_int=_bounded(int), parse_float=_bounded(float), parse_constant=_refused)
    except json.JSONDecodeError as exc:
        raise InvalidRequestError(f"{name}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    except ValueError as exc:
        raise InvalidRequestError(f"{name}: {exc}") from None


def json_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in `text` (outside strings), counted without parsing; stops
    counting once past MAX_JSON_DEPTH."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_JSON_DEPTH:
                break
        elif char in "]}":
            depth -= 1
    return deepest


def _bounded(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        if len(text) > MAX_NUMBER_CHARS:
            raise ValueError(f"a number of {len(text)} characters; the limit is {MAX_NUMBER_CHARS}")
        return kind(text)

    return convert


def _refused(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON number")


def search_request(
    settings: Settings,
    taxonomy: Taxonomy,
    top_k: int,
    category: str | None,
    text: str | None,
    filters: str | None,
    weights: str | None,
    profile: str | None,
    attribute_weight: float | None,
    region: str | None = None,
) -> SearchRequest:
    """Build the searcher's request; raises InvalidRequestError / FilterError (both 422)."""
    if not 1 <= top_k <= settings.max_top_k:
        raise InvalidRequestError(f"top_k must be between 1 and {settings.max_top_k}, got {top_k}")
    if text is not None and len(text) > MAX_TEXT_CHARS:
        raise InvalidRequestError(f"text is {len(text)} characters long; the limit is {MAX_TEXT_CHARS}")
    if attribute_weight is not None and not 0 <= attribute_weight <= 1:
        raise InvalidRequestError(f"attribute_weight must be between 0 and 1, got {attribute_weight}")
    given = parse_json_field("filters", filters, FiltersIn) or FiltersIn()
    categories = _listed(given.category) + ([category] if category else [])
    search_filters = build_filters(
        taxonomy,
        categories=categories,
        brands=_listed(given.brand),
        price_min=given.price_min,
        price_max=given.price_max,
        in_stock=given.in_stock,
        gender=given.gender,
        attributes=given.attributes,
    )
    ranking = None
    group_weights = parse_weights(weights)
    if group_weights is not None or attribute_weight is not None:
        ranking = settings.ranking.overridden(group_weights, attribute_weight)
    return SearchRequest(
        top_k=top_k,
        filters=search_filters,
        text=text.strip() if text and text.strip() else None,
        profile=_profile(parse_json_field("profile", profile, ProfileIn), taxonomy),
        ranking=ranking,
        region=parse_region(region),
    )


def _listed(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else value


def _profile(given: ProfileIn | None, taxonomy: Taxonomy) -> Profile | None:
    if given is None:
        return None
    colours = set()
    for raw in given.colours:
        colour = taxonomy.normalise_value("colour", raw)
        if colour is None:
            raise InvalidRequestError(f"profile.colours: unknown colour {shown(raw)}")
        colours.add(colour)
    return Profile(
        brands=frozenset(b.strip().lower() for b in given.brands if b.strip()),
        colours=frozenset(colours),
        price_min=given.price_min,
        price_max=given.price_max,
    )
