"""One ordered table from domain errors to HTTP. Bodies are always {"code": ..., "message": ...}."""

from __future__ import annotations

import logging
import re

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

log = logging.getLogger(__name__)
__all__ = ["ERROR_TABLE", "InvalidRequestError", "ItemNotFoundError", "error_body", "error_response"]


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


MAX_MESSAGE_CHARS = 1000  # an error message is for a person; what it quotes is cut before this (shown())


def error_body(code: str, message: str) -> dict[str, str]:
    message = redact_paths(message)
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[:MAX_MESSAGE_CHARS] + f"... ({len(message) - MAX_MESSAGE_CHARS} more characters)"
    return {"code": code, "message": message}


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
    status, code = mapped
    retry_after_s = getattr(exc, "retry_after_s", 1)  # seconds; the error may know better than 1
    headers = dict(getattr(exc, "headers", {}))
    if status in (429, 503):
        headers["Retry-After"] = str(retry_after_s)
    return JSONResponse(error_body(code, str(exc)), status_code=status, headers=headers or None)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(FashionSearchError)
    async def _domain(request: Request, exc: FashionSearchError) -> JSONResponse:
        return error_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err.get('loc', ()) if p != 'body')}: {err.get('msg')}"
            for err in exc.errors()
        )
        return JSONResponse(error_body("invalid_request", problems), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {
            400: "bad_request",
            404: "not_found",
            405: "method_not_allowed",
            413: "request_too_large",
        }.get(exc.status_code, "http_error")
        return JSONResponse(
            error_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers
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
    return JSONResponse(error_body("internal_error", "internal server error"), status_code=500)
