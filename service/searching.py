"""One search over HTTP, whatever its form (multipart, JSON with base64 or a URL, a catalogue item, a page of
an earlier search): the steps between the route and `search/`, each off the event loop but the slot wait.

1. options parsed and the co-viewing session checked (one trip to the thread pool);
2. an image URL fetched (in the pool, before the slot: a slow server holds no search slot);
3. the search in a slot (decode, detect, embed, rank; or the item's stored vector);
4. the answer shaped, its ranking kept for paging (`search.query_cache`), counted, given to the session.

A page (`query_id`) skips 1-3: it is a slice of the kept ranking, with no decode, detect or embed stage.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from PIL import Image
from starlette.concurrency import run_in_threadpool

from models.errors import FashionSearchError
from models.images import decode_image
from search.errors import InvalidRequestError
from search.profile import StyleProfile
from search.query_cache import QueryCache
from search.request_body import SearchBody
from search.responses import Answering, SearchResponse, search_response
from search.searcher import OutfitResult, OutfitSearcher, SearchRequest
from search.settings import Settings
from search.url_fetch import fetch_image
from service.access import charge_batch
from service.coview import session_photo
from service.errors import ProfilesDisabledError, domain_problem, validation_problem
from service.schemas import BatchOut, ErrorOut
from service.search_input import SearchInput, batch_entries, is_json, load_body, search_input

log = logging.getLogger(__name__)


async def run_batch(request: Request) -> BatchOut:
    """The searches of a batch, one after another (each takes a search slot in turn), in order; a search
    that fails answers its problem in its place and the others go on."""
    settings: Settings = request.app.state.settings
    if not is_json(request):
        raise InvalidRequestError("a batch is a JSON body: send Content-Type: application/json")
    answers: list[SearchResponse | ErrorOut] = []
    entries = batch_entries(load_body(await request.body()))
    charge_batch(request, len(entries))
    for entry in entries:
        try:
            answers.append(await run_search(request, search_input(entry, settings.max_upload_bytes)))
        except RequestValidationError as exc:
            answers.append(ErrorOut(**validation_problem(exc.errors())))
        except FashionSearchError as exc:
            answers.append(ErrorOut(**domain_problem(exc)))
        except Exception as exc:  # one broken search must not lose the others' answers
            log.error("unhandled error in a batch search", exc_info=exc)
            answers.append(ErrorOut(**domain_problem(exc)))
    return BatchOut(responses=answers)


async def run_search(request: Request, given: SearchInput) -> SearchResponse:
    state = request.app.state
    settings: Settings = state.settings
    body = given.body
    if body is not None and body.query_id is not None:
        return await run_in_threadpool(answer_page, state, body)
    searcher: OutfitSearcher = state.searcher

    def checked_options() -> SearchRequest:
        options = given.options(settings, searcher.extractor.taxonomy)
        if given.session_id:
            state.sessions.require(given.session_id)
        if given.profile_id:
            options = dataclasses.replace(options, profile=stored_profile(state, given.profile_id, options))
        return options

    options = await run_in_threadpool(checked_options)
    data = given.data
    if body is not None and body.image is not None and body.image.url is not None:
        data = await run_in_threadpool(
            fetch_image,
            body.image.url,
            max_bytes=settings.max_upload_bytes,
            timeout_s=settings.url_fetch_timeout_s,
            allow_private=settings.url_fetch_allow_private,
        )
    deadline = time.monotonic() + settings.request_timeout_s
    options = dataclasses.replace(options, deadline=deadline)
    async with state.limiter.slot(deadline):  # the wait is on the event loop
        if body is not None and body.item_id is not None:
            picture, result, timings = await run_in_threadpool(search_item, searcher, body.item_id, options)
        else:
            assert data is not None  # an image search has its bytes by now (SearchBody checks the kind)
            picture, result, timings = await run_in_threadpool(
                decode_and_search, searcher, data, options, settings.max_image_pixels
            )
    return await run_in_threadpool(answer_search, request, picture, result, timings, given.session_id)


def stored_profile(state: Any, profile_id: str, options: SearchRequest) -> StyleProfile:
    """The stored profile a search names (renewing it); a request with both `profile` and `profile_id` is
    refused."""
    if options.profile is not None:
        raise InvalidRequestError("give profile or profile_id, not both")
    if state.profiles is None:
        raise ProfilesDisabledError("this shop keeps no style profiles on the server: send `profile` instead")
    profile: StyleProfile = state.profiles.style_profile(profile_id)
    return profile


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


def search_item(
    searcher: OutfitSearcher, item_id: str, options: SearchRequest
) -> tuple[None, OutfitResult, dict[str, float]]:
    started = time.perf_counter()
    result = searcher.search_item(item_id, options)
    return None, result, {**result.timings_ms, "total": round((time.perf_counter() - started) * 1000, 2)}


def answer_search(
    request: Request,
    picture: Image.Image | None,
    result: OutfitResult,
    timings: dict[str, float],
    session_id: str | None,
) -> SearchResponse:
    """Shape the answer, keep it for paging, count it, and give it to the co-viewing session (a search by
    item has no photo to show there, so it is not given)."""
    state = request.app.state
    state.metrics.observe_stages(timings)
    size = picture.size if picture is not None else None
    cache: QueryCache = state.query_cache
    query_id = cache.put(result, size, state.searcher.store.build_dir.name)
    response = search_response(result, size, timings, answering(state.settings, query_id))
    state.signals.record_search(garment.category for garment in response.garments)
    if session_id and picture is not None:
        state.sessions.attach_search(session_id, session_photo(picture), response)
    return response


def answer_page(state: Any, body: SearchBody) -> SearchResponse:
    """The next page of one garment's matches from the kept ranking of an earlier search."""
    started = time.perf_counter()
    settings: Settings = state.settings
    cached = state.query_cache.get(body.query_id)
    garments = cached.result.garments
    index = body.garment if body.garment is not None else 0
    if index >= len(garments):
        raise InvalidRequestError(
            f"garment {index}: that search found {len(garments)} garment"
            f"{'' if len(garments) == 1 else 's'}" + (f" (0-{len(garments) - 1})" if garments else "")
        )
    top_k = settings.default_top_k if body.top_k is None else body.top_k
    if not 1 <= top_k <= settings.max_top_k:
        raise InvalidRequestError(f"top_k must be between 1 and {settings.max_top_k}, got {top_k}")
    offset = body.offset or 0
    chosen = garments[index]
    page = chosen.pool.page(offset, top_k) if chosen.pool is not None else []
    paged = dataclasses.replace(chosen, matches=page)
    result = dataclasses.replace(cached.result, garments=[*garments[:index], paged, *garments[index + 1 :]])
    timings = {"page": round((time.perf_counter() - started) * 1000, 2)}
    how = dataclasses.replace(answering(settings, body.query_id), garment=index, offset=offset)
    return search_response(result, cached.image_size, timings, how)


def answering(settings: Settings, query_id: str | None) -> Answering:
    return Answering(
        query_id=query_id,
        confident_score=settings.confident_score,
        confident_score_product=settings.confident_score_product,
        images_served=settings.image_root is not None,
    )
