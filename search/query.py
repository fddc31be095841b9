"""Search options from the multipart form and the CLI's flags: JSON-valued fields (`filters`, `weights`,
`profile`, `region`) are parsed and validated here so every mistake is a 422 naming the field, before any
model runs (a region is checked against the image's size once it is decoded: `search.searcher.region_box`)."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from indexer.filters import build_filters
from models.attributes.refinement import MAX_TEXT_CHARS
from models.attributes.taxonomy import Taxonomy
from models.errors import listed, shown
from search.errors import InvalidRequestError
from search.profile import StyleProfile
from search.ranking import check_group_weights
from search.request_body import FiltersIn, ProfileIn, SearchOptions
from search.searcher import Region, SearchRequest, checked_region
from search.settings import Settings

Model = TypeVar("Model", bound=BaseModel)
MAX_JSON_CHARS = 16_384  # of one JSON form field (filters, weights, profile)
MAX_JSON_DEPTH = 8  # the deepest real option is filters.attributes.<group>: [values], depth 3
MAX_NUMBER_CHARS = 40  # digits of one JSON number
REGION_FORMAT = "a JSON array of 4 numbers [x0, y0, x1, y1] (pixels of the photo after EXIF orientation)"


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
    return {str(k): float(v) for k, v in weights.items()}


def _checked_weights(weights: dict[str, float] | None) -> dict[str, float] | None:
    if weights is None:
        return None
    try:
        return check_group_weights(weights)
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
        return json.loads(
            raw, parse_int=bounded(int), parse_float=bounded(float), parse_constant=refused_constant
        )
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


def bounded(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        if len(text) > MAX_NUMBER_CHARS:
            raise ValueError(f"a number of {len(text)} characters; the limit is {MAX_NUMBER_CHARS}")
        return kind(text)

    return convert


def refused_constant(constant: str) -> Any:
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
    min_score: float | None = None,
    collapse_variants: bool | None = None,
) -> SearchRequest:
    """The searcher's request from string options (the multipart form, the CLI): the JSON-valued ones are
    parsed within bounds, then built as the JSON body's are; InvalidRequestError / FilterError (422)."""
    options = SearchOptions.model_construct(
        top_k=top_k,
        min_score=min_score,
        collapse_variants=collapse_variants,
        category=category,
        text=text,
        filters=parse_json_field("filters", filters, FiltersIn),
        weights=parse_weights(weights),
        attribute_weight=attribute_weight,
        profile=parse_json_field("profile", profile, ProfileIn),
    )
    return dataclasses.replace(search_options(settings, taxonomy, options), region=parse_region(region))


def search_options(settings: Settings, taxonomy: Taxonomy, options: SearchOptions) -> SearchRequest:
    """Build the searcher's request from typed options (the JSON body, or the parsed form); checks what the
    schema cannot (top_k against the configured maximum, filter values against the taxonomy)."""
    top_k = settings.default_top_k if options.top_k is None else options.top_k
    text = options.text
    if not 1 <= top_k <= settings.max_top_k:
        raise InvalidRequestError(f"top_k must be between 1 and {settings.max_top_k}, got {top_k}")
    if text is not None and len(text) > MAX_TEXT_CHARS:
        raise InvalidRequestError(f"text is {len(text)} characters long; the limit is {MAX_TEXT_CHARS}")
    attribute_weight = options.attribute_weight
    if attribute_weight is not None and not 0 <= attribute_weight <= 1:
        raise InvalidRequestError(f"attribute_weight must be between 0 and 1, got {attribute_weight}")
    if options.min_score is not None and not math.isfinite(options.min_score):
        raise InvalidRequestError(f"min_score must be a finite number, got {options.min_score}")
    given = options.filters or FiltersIn()
    categories = _listed(given.category) + ([options.category] if options.category else [])
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
    group_weights = _checked_weights(options.weights)
    if group_weights is not None or attribute_weight is not None:
        ranking = settings.ranking.overridden(group_weights, attribute_weight)
    return SearchRequest(
        top_k=top_k,
        filters=search_filters,
        text=text.strip() if text and text.strip() else None,
        profile=_profile(options.profile, taxonomy),
        ranking=ranking,
        region=None if options.region is None else checked_region(options.region),
        min_score=options.min_score,
        collapse_variants=options.collapse_variants is not False,
    )


def _listed(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else value


def _profile(given: ProfileIn | None, taxonomy: Taxonomy) -> StyleProfile | None:
    return None if given is None else style_profile(given, taxonomy)


def style_profile(
    given: ProfileIn,
    taxonomy: Taxonomy,
    learned: Mapping[str, Mapping[str, float]] | None = None,
    learned_price: float | None = None,
) -> StyleProfile:
    """The ranking's profile from quiz answers (values checked against the taxonomy: InvalidRequestError
    naming the field) and what was learned from the shopper's clicks."""
    return StyleProfile(
        colours=_values(taxonomy, "colour", "profile.colours", given.colours),
        avoid_colours=_values(taxonomy, "colour", "profile.avoid_colours", given.avoid_colours),
        fits=_values(taxonomy, "fit", "profile.fits", given.fits),
        styles=_values(taxonomy, "style", "profile.styles", given.styles),
        brands=frozenset(b.strip().lower() for b in given.brands if b.strip()),
        sizes=frozenset(s.strip().upper() for s in given.sizes if s.strip()),
        price_min=given.price_min,
        price_max=given.price_max,
        learned=dict(learned or {}),
        learned_price=learned_price,
    )


def _values(taxonomy: Taxonomy, group: str, name: str, given: list[str]) -> frozenset[str]:
    values = set()
    for raw in given:
        value = taxonomy.normalise_value(group, raw)
        if value is None:
            known = [v.name for v in taxonomy.groups[group].values]
            raise InvalidRequestError(f"{name}: unknown {group} {shown(raw)}; known: {listed(known)}")
        values.add(value)
    return frozenset(values)
