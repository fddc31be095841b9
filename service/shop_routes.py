"""The storefront page and its API: the shopper and assistant pages, co-viewing sessions (with a live event
stream) and shopper signals. Thin like service/routes.py; the state lives in service/coview.py (or, with
FASHION_REDIS_URL, service/coview_redis.py) and service/signals.py."""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from search.responses import item_from_record
from search.settings import Settings
from service.access import client_address_of
from service.coview import SessionStore
from service.coview_redis import RedisSessionStore
from service.errors import ProfilesDisabledError
from service.routes import ADMIN_KEY, STOREFRONT_KEY
from service.routes import errors as route_errors
from service.shop_schemas import (
    EventAccepted,
    EventIn,
    MessageIn,
    MessageOut,
    PushedItem,
    PushIn,
    PushOut,
    SessionCreated,
    SessionCreateIn,
    SessionSnapshot,
    StatsOut,
)

router = APIRouter()
STATIC_DIR = Path(__file__).resolve().parent / "static"
# The assistant's address holds the session id: never send it on as a Referer (product links leave the site).
# The pages load nothing from elsewhere and run no inline script; photos are shown from blob: URLs.
PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
}
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # no proxy buffering either
SESSION_ERRORS = {
    404: "unknown or expired session (the same answer for both)",
    429: "rate limited, the session has its 8 open streams, or this client holds its limit of sessions "
    "(Retry-After)",
    503: "the service holds its limit of sessions (creating one), or the shared state (FASHION_REDIS_URL) is "
    "unavailable (Retry-After)",
}
STREAM_DOC = (
    "Server-sent events: `snapshot` first (data: the session snapshot), then `search`, `activity`, "
    "`message`, `push`, `insight` (the assistant's card, after each activity and profile change), and "
    "`expired` when the session expires (the stream then ends); a `: ping` comment "
    "when idle."
)

errors = functools.partial(route_errors, descriptions=SESSION_ERRORS)


def sessions_of(request: Request) -> SessionStore | RedisSessionStore:
    store: SessionStore | RedisSessionStore = request.app.state.sessions
    return store


@router.get("/", include_in_schema=False)
def shopper_page() -> FileResponse:
    return page("index.html")


@router.get("/assist/{session_id}", include_in_schema=False)
def assistant_page(session_id: str) -> FileResponse:
    """The same page for any id: the page asks the API, which answers unknown and expired ids alike."""
    return page("assist.html")


def page(name: str) -> FileResponse:
    path = STATIC_DIR / name
    if not path.is_file():
        raise StarletteHTTPException(404, f"the page {name} is not installed")
    return FileResponse(path, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


@router.post(
    "/v1/sessions",
    status_code=201,
    response_model=SessionCreated,
    dependencies=[STOREFRONT_KEY],
    responses=errors(401, 422, 429, 503),
)
def create_session(request: Request, body: SessionCreateIn | None = None) -> SessionCreated:
    """Start a co-viewing session; the assistant joins at `assist_url`. One client address holds at most
    `FASHION_MAX_SESSIONS_PER_CLIENT` live sessions (then 429 too_many_sessions)."""
    settings: Settings = request.app.state.settings
    return sessions_of(request).create(client_address_of(request), settings.max_sessions_per_client)


@router.get(
    "/v1/sessions/{session_id}",
    response_model=SessionSnapshot,
    dependencies=[STOREFRONT_KEY],
    responses=errors(401, 404, 429, 503),
)
def get_session(request: Request, session_id: str) -> Response:
    # The store keeps the session as JSON: sent as it is (SessionSnapshot documents it).
    return Response(sessions_of(request).snapshot(session_id), media_type="application/json")


@router.get(
    "/v1/sessions/{session_id}/photo",
    response_class=Response,
    dependencies=[STOREFRONT_KEY],
    responses={
        200: {"content": {"image/jpeg": {}}, "description": "the last search's photo"},
        **errors(401, 404, 429, 503),
    },
)
def get_session_photo(request: Request, session_id: str) -> Response:
    """The last search's photo, upright, at most 640 px on its longest side; 404 before any search."""
    photo = sessions_of(request).photo(session_id)
    return Response(photo, media_type="image/jpeg", headers={"Cache-Control": "private, no-store"})


@router.get(
    "/v1/sessions/{session_id}/stream",
    response_class=StreamingResponse,
    dependencies=[STOREFRONT_KEY],
    responses={
        200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}, "description": STREAM_DOC},
        **errors(401, 404, 429, 503),
    },
)
async def stream_session(request: Request, session_id: str) -> StreamingResponse:
    """The session's events, live. At most 8 open streams per session."""
    sessions = sessions_of(request)
    loop = asyncio.get_running_loop()
    subscriber, first = await run_in_threadpool(sessions.subscribe, session_id, loop)  # renders the snapshot
    return StreamingResponse(
        sessions.frames(subscriber, first), media_type="text/event-stream", headers=STREAM_HEADERS
    )


# What a shopper or assistant adds to a session (a message, a pushed item) answers alike.
SESSION_ADDITION: dict[str, Any] = {
    "status_code": 201,
    "dependencies": [STOREFRONT_KEY],
    "responses": errors(401, 404, 422, 429, 503),
}


@router.post("/v1/sessions/{session_id}/messages", response_model=MessageOut, **SESSION_ADDITION)
def post_message(request: Request, session_id: str, body: MessageIn) -> MessageOut:
    return sessions_of(request).add_message(session_id, body.sender, body.text)


@router.post("/v1/sessions/{session_id}/push", response_model=PushOut, **SESSION_ADDITION)
def push_item(request: Request, session_id: str, body: PushIn) -> PushOut:
    """Show the shopper a catalogue item ("look at this one"); 404 item_not_found for an unknown id."""
    sessions = sessions_of(request)
    sessions.require(session_id)  # an unknown session answers first, whatever the item
    record = request.app.state.searcher.item(body.item_id)
    item = PushedItem(**item_from_record(record).model_dump(include=set(PushedItem.model_fields)))
    return sessions.add_push(session_id, item, body.garment, body.note)


@router.post(
    "/v1/events",
    status_code=202,
    response_model=EventAccepted,
    dependencies=[STOREFRONT_KEY],
    responses=errors(401, 404, 422, 429, 503),
)
def post_event(request: Request, body: EventIn) -> EventAccepted:
    """A shopper's event: a garment selected, an item viewed (with its dwell time), clicked, added to or
    removed from the cart, bought. With a session id also its activity (and the assistant's insight); with
    the profile_id of a profile that opted in to learning, what it teaches (items the index lacks teach
    nothing)."""
    if body.profile_id is not None:
        learn_from(request, body)
    if body.session_id is not None:
        sessions_of(request).add_activity(
            body.session_id, body.type, body.item_id, body.category, body.garment, body.dwell_s
        )
    request.app.state.signals.record_event(body.type, body.category)
    return EventAccepted(accepted=True)


def learn_from(request: Request, body: EventIn) -> None:
    profiles = request.app.state.profiles
    if profiles is None:
        raise ProfilesDisabledError("this shop keeps no style profiles on the server: send no profile_id")
    record = request.app.state.searcher.store.item(body.item_id) if body.item_id is not None else None
    if record is None:
        profiles.style_profile(body.profile_id)  # still 404 for an unknown profile
        return
    profiles.learn(body.profile_id, record, body.type)


@router.get("/v1/stats", response_model=StatsOut, dependencies=[ADMIN_KEY], responses=errors(401, 403, 429))
def get_stats(request: Request) -> StatsOut:
    """Searches, clicks, add-to-cart and click-through by category since the service started. Needs
    X-Admin-Key."""
    stats: StatsOut = request.app.state.signals.stats()
    return stats
