"""HTTP-only schemas (errors, health, admin). Search responses and items are built in search.responses,
shared with the CLI. Field names are a public contract: storefront and mobile clients parse them."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from indexer.feed import CatalogRow
from search.responses import SearchResponse, StrictModel


class FieldErrorOut(StrictModel):
    field: str = Field(
        description='the field at fault, a dotted path ("top_k", "items.0.id"; "body": all of it)'
    )
    message: str = Field(description='what is wrong with it, in plain words (e.g. "is required")')


class ErrorOut(StrictModel):
    """Problem details (RFC 9457), media type application/problem+json; `code` and `message` as before."""

    type: str = Field(
        description="URI reference naming the problem: /problems/<code>, e.g. /problems/image_too_large"
    )
    title: str = Field(
        description="the problem's short name, the same for every occurrence, e.g. Image too large"
    )
    status: int = Field(description="the HTTP status code")
    detail: str = Field(description="what went wrong this time, for people; never a server path")
    code: str = Field(description="stable machine-readable code, e.g. image_too_large")
    message: str = Field(description="the same as detail (kept for clients that read it)")
    errors: list[FieldErrorOut] = Field(
        default_factory=list,
        description="on validation errors (code invalid_request) only: each field at fault",
    )
    upstream_status: int | None = Field(
        None, description="url_fetch_failed only: the HTTP status the image URL answered, if it answered"
    )


class Health(StrictModel):
    status: str


class CatalogItemsIn(StrictModel):
    items: list[CatalogRow] = Field(min_length=1, max_length=1000, description="at most 1,000 per call")
    mode: Literal["add", "upsert"] = Field("add", description="add: new ids only; upsert: new or replaced")


class CatalogDeleteIn(StrictModel):
    ids: list[str] = Field(min_length=1, max_length=10_000)


class CatalogChanged(StrictModel):
    build: str = Field(description="the build serving now")
    changed: bool
    count: int
    added: int
    replaced: int
    deleted: int
    skipped: list[str] = Field(description="rows not applied, with the reason")
    missing_ids: list[str] = Field(description="ids to delete that the index did not have")


class Reloaded(StrictModel):
    build: str = Field(description="the build now serving")
    previous_build: str
    items: int
    changed: bool = Field(description="false when the link still pointed at the same build")


class Ready(StrictModel):
    status: str
    items: int
    model: str
    dimension: int
    index_created_at: str
    categories: list[str]
    shared_state: Literal["off", "up", "down"] = Field(
        "off",
        description="Redis (FASHION_REDIS_URL): off = not configured (one replica); down = sessions, "
        "events and statistics answer 503 while search keeps working",
    )


class BatchOut(StrictModel):
    responses: list[SearchResponse | ErrorOut] = Field(
        description="one per request, in order: a search response, or the problem that request had"
    )
