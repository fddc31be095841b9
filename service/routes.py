"""Routes stay thin: validate, call search/, shape the response. Plain `def` so that CPU-heavy work runs
in the thread pool, never on the event loop; except the search, which waits for its slot on the event loop
(a queued search holds no thread) and then runs in the pool, and the probes, which answer from the event loop
and read only memory (a full pool must not fail a liveness check)."""

from __future__ import annotations

import dataclasses
import time
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, Security, UploadFile
from fastapi.responses import FileResponse
from fastapi.security import APIKeyHeader
from PIL import Image
from starlette.concurrency import run_in_threadpool

from models.errors import ImageTooLargeError
from models.images import decode_image
from search.query import search_request
from search.responses import Item, SearchResponse, item_from_record, search_response
from search.searcher import MIN_REGION_INSIDE, MIN_REGION_PX, OutfitResult, OutfitSearcher, SearchRequest
from search.settings import Settings
from service.catalog import change_catalogue
from service.coview import session_photo
from service.errors import redact_paths
from service.files import served_image
from service.reload import reload_index
from service.schemas import CatalogChanged, CatalogDeleteIn, CatalogItemsIn, ErrorOut, Health, Ready, Reloaded

router = APIRouter()
# Keys are enforced by service/access.py before any body is read; these only declare them in OpenAPI.
STOREFRONT_KEY = Security(
    APIKeyHeader(
        name="X-API-Key", scheme_name="StorefrontKey", auto_error=False, description="when configured"
    )
)
ADMIN_KEY = Security(APIKeyHeader(name="X-Admin-Key", scheme_name="AdminKey", auto_error=False))
ERRORS = {
    400: "malformed request (e.g. broken multipart)",
    401: "missing or wrong key",
    403: "admin API off",
    404: "unknown item, or image not served, or unknown session",
    409: "index refused; the previous one keeps serving",
    413: "upload or image too large",
    415: "not an image, or an image format we do not decode",
    422: "invalid parameter or undecodable image",
    429: "rate limited (Retry-After)",
    503: "overloaded or past the deadline (Retry-After)",
}


def errors(*codes: int, descriptions: dict[int, str] | None = None) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these status codes; `descriptions` overrides ERRORS' wording per code."""
    wording = {**ERRORS, **(descriptions or {})}
    return {code: {"model": ErrorOut, "description": wording[code]} for code in codes}


@router.post(
    "/v1/search",
    response_model=SearchResponse,
    dependencies=[STOREFRONT_KEY],
    responses=errors(400, 401, 404, 413, 415, 422, 429, 503),
)
async def search(
    request: Request,
    image: Annotated[UploadFile, File(description="the photo (JPEG, PNG, WebP, GIF, BMP, HEIC/HEIF)")],
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
    session_id: Annotated[
        str | None,
        Form(description="a co-viewing session: it gets the photo and results (404 if unknown)"),
    ] = None,
    region: Annotated[
        str | None,
        Form(
            description="JSON [x0, y0, x1, y1], pixels of the photo after EXIF orientation: search this box "
            "as the one garment (no detection; category from the classifier). Clipped to the photo when at "
            f"least {MIN_REGION_INSIDE:.0%} of its area is on it; at least {MIN_REGION_PX}x{MIN_REGION_PX} "
            "pixels. Malformed, empty, too small or off the photo: 422"
        ),
    ] = None,
) -> SearchResponse:
    settings: Settings = request.app.state.settings
    deadline = time.monotonic() + settings.request_timeout_s
    searcher: OutfitSearcher = request.app.state.searcher
    k = settings.default_top_k if top_k is None else top_k

    def checked_options() -> SearchRequest:
        """Parse the options, then check the session (before the search runs). Quick, but it parses JSON and
        takes the session store's lock: one trip to the pool, never on the event loop."""
        options = search_request(
            settings, searcher.extractor.taxonomy, k, category, text, filters, weights, profile,
            attribute_weight, region,
        )  # fmt: skip
        if session_id:
            request.app.state.sessions.require(session_id)
        return dataclasses.replace(options, deadline=deadline)

    options = await run_in_threadpool(checked_options)
    data = await read_limited(image, settings.max_upload_bytes)  # the bytes decide the type, not the name
    async with request.app.state.limiter.slot(deadline):  # the wait is on the event loop
        picture, result, timings = await run_in_threadpool(
            decode_and_search, searcher, data, options, settings.max_image_pixels
        )
    return await run_in_threadpool(answer_search, request, picture, result, timings, session_id)


@router.get(
    "/v1/items/{item_id}", response_model=Item, dependencies=[STOREFRONT_KEY], responses=errors(401, 404, 429)
)
def get_item(request: Request, item_id: str) -> Item:
    return item_from_record(request.app.state.searcher.item(item_id))


@router.get(
    "/v1/items/{item_id}/image",
    response_class=FileResponse,
    dependencies=[STOREFRONT_KEY],
    responses={200: {"content": {"image/*": {}}}, **errors(401, 404, 429)},
)
def get_item_image(request: Request, item_id: str) -> FileResponse:
    """The item's catalogue image, served only from `image_root` (404 when off or outside it)."""
    record = request.app.state.searcher.item(item_id)
    path, media_type = served_image(request.app.state.settings.image_root, record.image)
    return FileResponse(path, media_type=media_type, headers={"Cache-Control": "public, max-age=3600"})


@router.post(
    "/v1/admin/reload",
    response_model=Reloaded,
    dependencies=[ADMIN_KEY],
    responses=errors(401, 403, 409, 429),
)
def reload(request: Request) -> Reloaded:
    """Open the index the configured link points at now and swap it in; a bad index is refused (409) and
    the previous one keeps serving. Needs X-Admin-Key."""
    return reload_index(request.app)


# Both catalogue-change routes answer alike.
CATALOGUE_CHANGE: dict[str, Any] = {
    "response_model": CatalogChanged,
    "dependencies": [ADMIN_KEY],
    "responses": errors(401, 403, 409, 422, 429),
}


@router.post("/v1/admin/items", **CATALOGUE_CHANGE)
def add_items(request: Request, body: CatalogItemsIn) -> CatalogChanged:
    """Add (or upsert) items; durable and searchable when this answers. Needs X-Admin-Key."""
    return change_catalogue(request.app, rows=body.items, mode=body.mode)


@router.post("/v1/admin/items/delete", **CATALOGUE_CHANGE)
def delete_items(request: Request, body: CatalogDeleteIn) -> CatalogChanged:
    """Remove items by id; gone from results when this answers. Needs X-Admin-Key."""
    return change_catalogue(request.app, delete_ids=body.ids)


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", response_model=Ready)
async def readyz(request: Request) -> Ready:
    """From the loaded index's manifest and counts, in memory: no I/O, no lock, no thread."""
    searcher: OutfitSearcher = request.app.state.searcher
    manifest = searcher.store.manifest
    return Ready(
        status="ready",
        items=searcher.store.count,
        model=redact_paths(manifest.model_name),  # a local-dir: model names a server path
        dimension=manifest.dimension,
        index_created_at=manifest.created_at,
        categories=searcher.store.categories,
    )


def decode_and_search(
    searcher: OutfitSearcher, data: bytes, options: SearchRequest, max_image_pixels: int
) -> tuple[Image.Image, OutfitResult, dict[str, float]]:
    """The CPU work a search slot is for (in the pool); the timings include the decode and the total."""
    started = time.perf_counter()
    picture = decode_image(data, max_image_pixels)
    decode_ms = round((time.perf_counter() - started) * 1000, 2)
    result = searcher.search(picture, options)
    timings = {"decode": decode_ms, **result.timings_ms}
    timings["total"] = round((time.perf_counter() - started) * 1000, 2)
    return picture, result, timings


def answer_search(
    request: Request,
    picture: Image.Image,
    result: OutfitResult,
    timings: dict[str, float],
    session_id: str | None,
) -> SearchResponse:
    """Shape the answer, count it, and give it to the co-viewing session (in the pool, after the slot)."""
    request.app.state.metrics.observe_stages(timings)
    response = search_response(result, picture.size, timings)
    request.app.state.signals.record_search(garment.category for garment in response.garments)
    if session_id:
        request.app.state.sessions.attach_search(session_id, session_photo(picture), response)
    return response


async def read_limited(upload: UploadFile, limit: int) -> bytes:
    data = await upload.read(limit + 1)  # a spooled file on disk is read in the pool
    if len(data) > limit:
        raise ImageTooLargeError(f"the upload is larger than the {limit}-byte limit")
    return data
