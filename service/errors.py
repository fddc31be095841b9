"""One ordered table from domain errors to HTTP. Bodies are always {"code": ..., "message": ...}."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from indexer.filters import FilterError
from indexer.store import UnknownCategoryError
from models.errors import (
    FashionSearchError,
    ImageDecodeError,
    ImageTooLargeError,
    UnsupportedImageTypeError,
)

log = logging.getLogger(__name__)


class ItemNotFoundError(FashionSearchError):
    """No catalogue item has that id."""


class OverloadedError(FashionSearchError):
    """Every search slot is busy and the wait timed out."""


class InvalidRequestError(FashionSearchError):
    """A request parameter is out of range."""


# First match wins: keep subclasses above their bases.
ERROR_TABLE: tuple[tuple[type[Exception], int, str], ...] = (
    (ImageTooLargeError, 413, "image_too_large"),
    (UnsupportedImageTypeError, 415, "unsupported_media_type"),
    (ImageDecodeError, 422, "undecodable_image"),
    (UnknownCategoryError, 422, "unknown_category"),
    (FilterError, 422, "invalid_filter"),
    (InvalidRequestError, 422, "invalid_request"),
    (ItemNotFoundError, 404, "item_not_found"),
    (OverloadedError, 503, "overloaded"),
)


def error_body(code: str, message: str) -> dict[str, str]:
    return {"code": code, "message": message}


def lookup(exc: Exception) -> tuple[int, str] | None:
    for error_type, status, code in ERROR_TABLE:
        if isinstance(exc, error_type):
            return status, code
    return None


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(FashionSearchError)
    async def _domain(request: Request, exc: FashionSearchError) -> JSONResponse:
        mapped = lookup(exc)
        if mapped is None:
            return _unexpected(request, exc)
        status, code = mapped
        headers = {"Retry-After": "1"} if status == 503 else None
        return JSONResponse(error_body(code, str(exc)), status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err.get('loc', ()) if p != 'body')}: {err.get('msg')}"
            for err in exc.errors()
        )
        return JSONResponse(error_body("invalid_request", problems), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}.get(
            exc.status_code, "http_error"
        )
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
