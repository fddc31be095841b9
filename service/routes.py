"""Routes stay thin: validate, call search/, shape the response. Plain `def` so that CPU-heavy work runs
in the thread pool, never on the event loop; except the search, which waits for its slot on the event loop
(a queued search holds no thread) and then runs in the pool, and the probes, which answer from the event loop
and read only memory (a full pool must not fail a liveness check)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Security
from fastapi.responses import FileResponse
from fastapi.security import APIKeyHeader

from search.responses import Item, SearchResponse, item_from_record
from search.searcher import OutfitSearcher
from service.catalog import change_catalogue
from service.errors import redact_paths
from service.files import served_image
from service.openapi import BATCH_REQUEST_BODY, SEARCH_REQUEST_BODY
from service.reload import reload_index
from service.schemas import (
    BatchOut,
    CatalogChanged,
    CatalogDeleteIn,
    CatalogItemsIn,
    ErrorOut,
    Health,
    Ready,
    Reloaded,
)
from service.search_input import read_search
from service.searching import run_batch, run_search

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
    openapi_extra=SEARCH_REQUEST_BODY,
)
async def search(request: Request) -> SearchResponse:
    """Every garment of a photo and its matches. The body is a multipart form (the photo as file `image`,
    options as text fields) or JSON: `{"image": {"base64" | "url": ...}}`, `{"item_id": ...}` (more like
    this), or `{"query_id", "garment", "offset"}` (the next page, from the kept ranking)."""
    given = await read_search(request, request.app.state.settings.max_upload_bytes)
    return await run_search(request, given)


@router.post(
    "/v1/search/batch",
    response_model=BatchOut,
    dependencies=[STOREFRONT_KEY],
    responses=errors(400, 401, 413, 422, 429),
    openapi_extra=BATCH_REQUEST_BODY,
)
async def search_batch(request: Request) -> BatchOut:
    """Up to 16 JSON searches in one call (each as the JSON body of POST /v1/search), answered in order:
    each a search response or its problem; one bad image or option fails only its own entry."""
    return await run_batch(request)


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
    """From the loaded index's manifest and counts, in memory, and, with Redis configured, a PING of it (at
    most FASHION_REDIS_TIMEOUT_S): no lock, no thread. Ready while Redis is down: search needs no Redis."""
    searcher: OutfitSearcher = request.app.state.searcher
    manifest = searcher.store.manifest
    shared = request.app.state.shared_state
    return Ready(
        shared_state="off" if shared is None else "up" if await shared.aping() else "down",
        status="ready",
        items=searcher.store.count,
        model=redact_paths(manifest.model_name),  # a local-dir: model names a server path
        dimension=manifest.dimension,
        index_created_at=manifest.created_at,
        categories=searcher.store.categories,
    )
