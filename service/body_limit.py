"""Request body limits enforced on the stream, per kind of route: an upload, an admin catalogue change, any
other (JSON) body. A pure ASGI middleware that counts the bytes `receive` hands the app, so a chunked body
(no Content-Length) is held to the same limit as a declared one.

- A declared Content-Length over the limit is refused before any byte is read (the fast path).
- Content-Length together with Transfer-Encoding is refused (400): the two framings disagree about where
  the body ends, the classic request-smuggling shape, and no honest client sends both.
- Once the count passes the limit, `receive` raises and never reads again. Whatever the app answers after
  that (Starlette's form parser closes its spool files and FastAPI turns the failure into a 400) is
  replaced by the 413, which goes out with `Connection: close`: the rest of the body is never read, so
  the connection cannot be reused.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from models.errors import FashionSearchError, ImageTooLargeError
from service.errors import ConflictingFramingError, RequestTooLargeError, error_response

MULTIPART_OVERHEAD_BYTES = 64 * 1024  # form fields and part headers around the image
UPLOAD_PATH = "/v1/search"
BATCH_PATH = "/v1/search/batch"
ADMIN_PREFIX = "/v1/admin/"


@dataclass(frozen=True)
class BodyLimits:
    """Bytes a request body may have: `upload_bytes` for the image of a search (the body may exceed it by
    the multipart overhead, or by base64's 4/3 and the options when it is JSON), `batch_bytes` for a batch
    of searches, `admin_bytes` for admin catalogue changes, `json_bytes` for everything else (the default,
    so a route nobody classified gets the smallest limit)."""

    upload_bytes: int
    admin_bytes: int
    json_bytes: int
    batch_bytes: int = 32 * 1024 * 1024

    def search_json_bytes(self) -> int:
        """A JSON search carries its image as base64: 4/3 of the upload limit, plus the options."""
        return -(-self.upload_bytes * 4 // 3) + self.json_bytes

    def refusal(self, scope: Scope, body_bytes: int | None) -> tuple[int, FashionSearchError]:
        """The limit for this request, and the error that refuses it (`body_bytes`: declared, if known)."""
        path = scope["path"]
        size = f"{body_bytes} bytes" if body_bytes is not None else "more than that"
        if path == UPLOAD_PATH and _is_json(scope):
            limit = self.search_json_bytes()
            message = (
                f"the JSON search body is larger than its {limit}-byte limit (a base64 image of at most "
                f"{self.upload_bytes} bytes and the options; body: {size})"
            )
            return limit, ImageTooLargeError(message)
        if path == UPLOAD_PATH:
            limit = self.upload_bytes + MULTIPART_OVERHEAD_BYTES  # the message names the limit people set
            message = f"the upload is larger than the {self.upload_bytes}-byte limit (body: {size})"
            return limit, ImageTooLargeError(message)
        if path == BATCH_PATH:
            limit = self.batch_bytes
        else:
            limit = self.admin_bytes if path.startswith(ADMIN_PREFIX) else self.json_bytes
        message = f"the request body is larger than the {limit}-byte limit of this route (body: {size})"
        return limit, RequestTooLargeError(message)


def _is_json(scope: Scope) -> bool:
    content_type = Headers(scope=scope).get("content-type", "")
    return content_type.split(";", 1)[0].strip().lower() == "application/json"


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, limits: BodyLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        declared = headers.get("content-length")
        if declared is not None and "transfer-encoding" in headers:
            message = "a request may not have both Content-Length and Transfer-Encoding"
            await _refuse(scope, receive, send, ConflictingFramingError(message))
            return
        # h11 has already refused a Content-Length that is not a number.
        declared_bytes = int(declared) if declared is not None and declared.isdigit() else None
        limit, refusal = self.limits.refusal(scope, declared_bytes)
        if declared_bytes is not None and declared_bytes > limit:
            await _refuse(scope, receive, send, refusal)
            return
        await _LimitedRequest(self.app, limit, refusal)(scope, receive, send)


class _LimitedRequest:
    """One request whose body is counted as the app reads it."""

    def __init__(self, app: ASGIApp, limit: int, refusal: FashionSearchError) -> None:
        self.app = app
        self.limit = limit
        self.refusal = refusal
        self.received = 0
        self.refused = False  # the count passed the limit
        self.started = False  # a response went out (the app's, or the 413)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def counted_receive() -> Message:
            if self.refused:
                return {"type": "http.disconnect"}  # never read past the limit
            message = await receive()
            if message["type"] == "http.request":
                self.received += len(message.get("body", b""))
                if self.received > self.limit:
                    self.refused = True
                    raise self.refusal
            return message

        async def guarded_send(message: Message) -> None:
            if self.refused:
                if not self.started:  # the app's answer to the failed read (400 or 500) becomes the 413
                    self.started = True
                    await _refuse(scope, receive, send, self.refusal)
                return
            if message["type"] == "http.response.start":
                self.started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not self.refused or self.started:
                raise
        if self.refused and not self.started:
            self.started = True
            await _refuse(scope, receive, send, self.refusal)


async def _refuse(scope: Scope, receive: Receive, send: Send, error: FashionSearchError) -> None:
    """The error table's answer, on a connection that closes after it (its body may be still unread)."""
    response = error_response(Request(scope), error)
    response.headers["Connection"] = "close"
    await response(scope, receive, send)
