"""One ordered table from domain errors to HTTP. Every error answers RFC 9457 problem details, media type
`application/problem+json`:

    {"type": "/problems/image_too_large", "title": "Image too large", "status": 413,
     "detail": "...", "code": "image_too_large", "message": "...", "errors": [{"field": ..., "message": ...}]}

- `type` is the relative URI reference `/problems/<code>` (PROBLEM_TYPE_PREFIX + code): one stable identifier
  per code, the same on every install, which clients compare as a string (nothing is served there).
- `title` is the code's short human name (TITLES), `status` the HTTP status, `detail` what went wrong.
- `code` and `message` (= `detail`) are the body this service answered before problem details; they stay for
  the clients that parse them.
- `errors`, on validation errors only (code invalid_request): one {"field": "dotted.path", "message": ...}
  per problem, in plain words (never a framework's type names, never the value sent beyond shown()'s
  quoting).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from indexer.filters import FilterError
from indexer.manifest import IndexCorruptError
from indexer.milvus_connection import VectorStoreError
from indexer.publish import BuildError, BuildLockedError
from indexer.store import UnknownCategoryError
from models.errors import (
    FashionSearchError,
    ImageDecodeError,
    ImageTooLargeError,
    ModelMismatchError,
    UnsupportedImageTypeError,
)
from search.errors import (
    InvalidRequestError,
    ItemNotFoundError,
    QueryNotFoundError,
    SearchDeadlineError,
    UrlFetchError,
    UrlNotAllowedError,
)
from service.field_errors import named_field, validation_errors

log = logging.getLogger(__name__)
__all__ = [
    "ERROR_TABLE",
    "PROBLEM_JSON",
    "InvalidRequestError",
    "ItemNotFoundError",
    "ProblemResponse",
    "error_body",
    "error_response",
]
PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPE_PREFIX = "/problems/"


class ProblemResponse(JSONResponse):
    """An error's answer: problem details (RFC 9457)."""

    media_type = PROBLEM_JSON


class OverloadedError(FashionSearchError):
    """Every search slot is busy and the wait timed out."""


class UnauthorizedError(FashionSearchError):
    """The request lacks the key its route needs, or the key is wrong; `header` names the key's header."""

    def __init__(self, header: str) -> None:
        super().__init__(f"a valid {header} header is required")
        self.headers = {"WWW-Authenticate": header}


class AdminDisabledError(FashionSearchError):
    """The admin API is off: the service has no admin key."""


class RetryLaterError(FashionSearchError):
    """A refusal that ends by itself; `retry_after_s` (the Retry-After header) says when to try again."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RateLimitedError(RetryLaterError):
    """The caller's token bucket is empty; `retry_after_s`: until there are enough tokens."""


class ImageNotServedError(FashionSearchError):
    """The item has no image under the configured image root, or image serving is off."""


class SessionNotFoundError(FashionSearchError):
    """No live co-viewing session has that id: never created, or expired (the same answer for both)."""


class PhotoNotFoundError(FashionSearchError):
    """The session has no search photo yet."""


class SessionsFullError(RetryLaterError):
    """The service holds as many co-viewing sessions as it may; `retry_after_s`: until the next expires."""


class TooManySessionsError(RetryLaterError):
    """The client address already holds its quota of co-viewing sessions; `retry_after_s`: until one of them
    expires."""


class RequestTooLargeError(FashionSearchError):
    """The request body is larger than its route's limit (declared, or counted as it streams in)."""


class ConflictingFramingError(FashionSearchError):
    """The request says where its body ends twice (Content-Length and Transfer-Encoding)."""


class TooManyStreamsError(FashionSearchError):
    """The session already has as many open event streams as it may."""

    retry_after_s = 5


class ProfileNotFoundError(FashionSearchError):
    """No stored style profile has that id: never created, expired or forgotten (the same answer)."""


class ProfilesDisabledError(FashionSearchError):
    """The shop keeps no style profiles on the server (FASHION_PROFILES_ENABLED is off)."""


class ProfilesFullError(RetryLaterError):
    """The service stores as many style profiles as it may (FASHION_MAX_PROFILES)."""


class SharedStateUnavailableError(RetryLaterError):
    """Redis (FASHION_REDIS_URL), which holds the state every replica shares, did not answer in time."""


# First match wins: keep subclasses above their bases.
ERROR_TABLE: tuple[tuple[type[Exception], int, str], ...] = (
    (ImageTooLargeError, 413, "image_too_large"),
    (RequestTooLargeError, 413, "request_too_large"),
    (ConflictingFramingError, 400, "bad_request"),
    (UnsupportedImageTypeError, 415, "unsupported_media_type"),
    (ImageDecodeError, 422, "undecodable_image"),
    (UnknownCategoryError, 422, "unknown_category"),
    (FilterError, 422, "invalid_filter"),
    (UrlNotAllowedError, 422, "url_not_allowed"),
    (UrlFetchError, 422, "url_fetch_failed"),
    (InvalidRequestError, 422, "invalid_request"),
    (ItemNotFoundError, 404, "item_not_found"),
    (QueryNotFoundError, 404, "query_not_found"),
    (ImageNotServedError, 404, "image_not_found"),
    (SessionNotFoundError, 404, "session_not_found"),
    (PhotoNotFoundError, 404, "photo_not_found"),
    (ProfileNotFoundError, 404, "profile_not_found"),
    (ProfilesDisabledError, 403, "profiles_disabled"),
    (ProfilesFullError, 503, "profiles_full"),
    (SharedStateUnavailableError, 503, "shared_state_unavailable"),
    (SessionsFullError, 503, "sessions_full"),
    (TooManySessionsError, 429, "too_many_sessions"),
    (TooManyStreamsError, 429, "too_many_streams"),
    (RateLimitedError, 429, "rate_limited"),
    (UnauthorizedError, 401, "unauthorized"),
    (AdminDisabledError, 403, "admin_disabled"),
    (OverloadedError, 503, "overloaded"),
    (SearchDeadlineError, 503, "deadline_exceeded"),
    (VectorStoreError, 503, "vector_store_unavailable"),
    (BuildLockedError, 409, "index_busy"),
    (BuildError, 409, "update_refused"),
    (IndexCorruptError, 409, "index_rejected"),  # admin reload: the previous index keeps serving
    (ModelMismatchError, 409, "index_rejected"),
)
# Absolute paths of this machine never leave it: in messages that name one (an index or weights file) only
# the file name is kept ("<...>/vectors.faiss"). A path is a "/" followed by at least two name segments; a
# folder's name may hold spaces and brackets ("/srv/my data (prod)/index") but neither starts nor ends with a
# space, so two paths in one sentence stay two.
_FOLDER = r"[^/\s\"'`<>|](?:[^/\x00-\x1f\"'`<>|]*[^/\s\"'`<>|])?"
_ABSOLUTE_PATH = re.compile(rf"(?<![\w./])/(?:{_FOLDER}/)+[\w.@+~-]*")


# A problem's `title`: the code's short human name, the same for every occurrence.
TITLES: Mapping[str, str] = {
    "image_too_large": "Image too large",
    "request_too_large": "Request too large",
    "bad_request": "Malformed request",
    "unsupported_media_type": "Unsupported image type",
    "undecodable_image": "Undecodable image",
    "unknown_category": "Unknown category",
    "invalid_filter": "Invalid filter",
    "url_not_allowed": "Image URL not allowed",
    "url_fetch_failed": "Image URL not fetched",
    "invalid_request": "Invalid request",
    "item_not_found": "Item not found",
    "query_not_found": "Query not found",
    "image_not_found": "Image not found",
    "session_not_found": "Session not found",
    "photo_not_found": "Photo not found",
    "profile_not_found": "Profile not found",
    "profiles_disabled": "Profiles disabled",
    "profiles_full": "Too many profiles",
    "shared_state_unavailable": "Shared state unavailable",
    "sessions_full": "Service full of sessions",
    "too_many_sessions": "Too many sessions",
    "too_many_streams": "Too many event streams",
    "rate_limited": "Too many requests",
    "unauthorized": "Key required",
    "admin_disabled": "Admin API off",
    "overloaded": "Service overloaded",
    "deadline_exceeded": "Search deadline exceeded",
    "vector_store_unavailable": "Vector store unavailable",
    "index_busy": "Index busy",
    "update_refused": "Update refused",
    "index_rejected": "Index rejected",
    "not_found": "Not found",
    "method_not_allowed": "Method not allowed",
    "internal_error": "Internal server error",
}
HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}
_STATUS_OF_CODE = {
    **{code: status for _, status, code in ERROR_TABLE},
    **{code: status for status, code in HTTP_CODES.items()},
    "internal_error": 500,
}
MAX_MESSAGE_CHARS = 1000  # an error message is for a person; what it quotes is cut before this (shown())
MAX_FIELD_ERRORS = 100  # `errors` entries in one answer; a body with 10,000 bad fields gets the first ones


def error_body(
    code: str, message: str, status: int | None = None, errors: Sequence[Mapping[str, str]] = ()
) -> dict[str, Any]:
    """The problem details for `code` (status: the code's in ERROR_TABLE unless given); `errors`: the fields
    at fault, {"field", "message"} each."""
    status = _STATUS_OF_CODE.get(code, 500) if status is None else status
    message = _bounded(message)
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_PREFIX + code,
        "title": title_of(code, status),
        "status": status,
        "detail": message,
        "code": code,
        "message": message,
    }
    if errors:
        body["errors"] = [
            {"field": _bounded(error["field"]), "message": _bounded(error["message"])}
            for error in errors[:MAX_FIELD_ERRORS]
        ]
    return body


def title_of(code: str, status: int) -> str:
    if code in TITLES:
        return TITLES[code]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _bounded(message: str) -> str:
    message = redact_paths(message)
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[:MAX_MESSAGE_CHARS] + f"... ({len(message) - MAX_MESSAGE_CHARS} more characters)"
    return message


def redact_paths(message: str) -> str:
    return _ABSOLUTE_PATH.sub(lambda found: "<...>/" + found.group(0).rsplit("/", 1)[1], message)


def lookup(exc: Exception) -> tuple[int, str] | None:
    for error_type, status, code in ERROR_TABLE:
        if isinstance(exc, error_type):
            return status, code
    return None


def error_response(request: Request, exc: FashionSearchError) -> JSONResponse:
    """The answer to a domain error, from ERROR_TABLE (a middleware that refuses a request uses it too)."""
    mapped = lookup(exc)
    if mapped is None:
        return _unexpected(request, exc)
    status = mapped[0]
    retry_after_s = getattr(exc, "retry_after_s", 1)  # seconds; the error may know better than 1
    headers = dict(getattr(exc, "headers", {}))
    if status in (429, 503):
        headers["Retry-After"] = str(retry_after_s)
    return ProblemResponse(domain_problem(exc), status_code=status, headers=headers or None)


def domain_problem(exc: Exception) -> dict[str, Any]:
    """The problem details of a domain error in ERROR_TABLE (an unmapped one is an internal error)."""
    mapped = lookup(exc)
    if mapped is None:
        return error_body("internal_error", "internal server error", 500)
    status, code = mapped
    errors = named_field(str(exc)) if code == "invalid_request" else ()
    body = error_body(code, str(exc), status, errors)
    if isinstance(exc, UrlFetchError) and exc.upstream_status is not None:
        body["upstream_status"] = exc.upstream_status
    return body


def validation_problem(problems: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    errors = validation_errors(problems)
    message = "; ".join(f"{error['field']} {error['message']}" for error in errors)
    return error_body("invalid_request", message or "the request is not valid", 422, errors)


def validation_response(problems: Sequence[Mapping[str, Any]]) -> JSONResponse:
    return ProblemResponse(validation_problem(problems), status_code=422)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(FashionSearchError)
    async def _domain(request: Request, exc: FashionSearchError) -> JSONResponse:
        return error_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_response(exc.errors())

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = HTTP_CODES.get(exc.status_code, "http_error")
        return ProblemResponse(
            error_body(code, str(exc.detail), exc.status_code),
            status_code=exc.status_code,
            headers=exc.headers,
        )

    @app.middleware("http")
    async def _unexpected_errors(request: Request, call_next):
        # Here rather than as an Exception handler, which Starlette re-raises (a second traceback).
        try:
            return await call_next(request)
        except Exception as exc:
            return _unexpected(request, exc)


def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return ProblemResponse(error_body("internal_error", "internal server error", 500), status_code=500)
