"""Routes stay thin: validate, call indexer/ and models/, shape the response. Plain `def` so that
CPU-heavy work runs in the thread pool, never on the event loop."""

from __future__ import annotations

import time
from typing import Annotated, BinaryIO

from fastapi import APIRouter, File, Form, Request, UploadFile

from indexer.search import OutfitSearcher
from models.errors import ImageTooLargeError
from models.images import check_media_type, decode_image
from service.errors import ItemNotFoundError
from service.query import search_request
from service.schemas import Health, Item, Ready, SearchResponse, item_from_record, search_response
from service.settings import Settings

router = APIRouter()


@router.post("/v1/search", response_model=SearchResponse)
def search(
    request: Request,
    image: Annotated[UploadFile, File(description="the photo (JPEG, PNG, WebP, GIF, BMP)")],
    top_k: Annotated[int | None, Form(description="matches per garment")] = None,
    category: Annotated[str | None, Form(description="only match this catalogue category")] = None,
    text: Annotated[str | None, Form(description='refinement, e.g. "in red, not striped"')] = None,
    filters: Annotated[
        str | None,
        Form(
            description='JSON: {"category", "brand", "price_min", "price_max", "in_stock", "gender", '
            '"attributes": {group: value or [values]}}'
        ),
    ] = None,
    weights: Annotated[str | None, Form(description='JSON group weights, e.g. {"colour": 3}')] = None,
    attribute_weight: Annotated[
        float | None, Form(description="0 = visual only, 1 = attributes only")
    ] = None,
    profile: Annotated[
        str | None, Form(description='JSON: {"brands": [], "colours": [], "price_min", "price_max"}')
    ] = None,
) -> SearchResponse:
    settings: Settings = request.app.state.settings
    searcher: OutfitSearcher = request.app.state.searcher
    k = settings.default_top_k if top_k is None else top_k
    options = search_request(
        settings, searcher.extractor.taxonomy, k, category, text, filters, weights, profile, attribute_weight
    )
    check_media_type(image.content_type)
    data = read_limited(image.file, settings.max_upload_bytes)
    with request.app.state.limiter.slot():
        started = time.perf_counter()
        picture = decode_image(data, settings.max_image_pixels)
        decode_ms = round((time.perf_counter() - started) * 1000, 2)
        result = searcher.search(picture, options)
    timings = {"decode": decode_ms, **result.timings_ms}
    timings["total"] = round((time.perf_counter() - started) * 1000, 2)
    request.app.state.metrics.observe_stages(timings)
    return search_response(result, picture.size, timings)


@router.get("/v1/items/{item_id}", response_model=Item)
def get_item(request: Request, item_id: str) -> Item:
    record = request.app.state.searcher.store.item(item_id)
    if record is None:
        raise ItemNotFoundError(f"no catalogue item has id {item_id!r}")
    return item_from_record(record)


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", response_model=Ready)
def readyz(request: Request) -> Ready:
    searcher: OutfitSearcher = request.app.state.searcher
    manifest = searcher.store.manifest
    return Ready(
        status="ready",
        items=searcher.store.count,
        model=manifest.model_name,
        dimension=manifest.dimension,
        index_created_at=manifest.created_at,
        categories=searcher.store.categories,
    )


def read_limited(stream: BinaryIO, limit: int) -> bytes:
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise ImageTooLargeError(f"the upload is larger than the {limit}-byte limit")
    return data
