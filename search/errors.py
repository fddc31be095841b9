"""Query-time errors shared by the HTTP service and the CLI (the service maps them to HTTP codes)."""

from __future__ import annotations

from models.errors import FashionSearchError


class SearchDeadlineError(FashionSearchError):
    """The search ran past its deadline; it stopped at the next stage boundary."""


class InvalidRequestError(FashionSearchError):
    """A request parameter is out of range."""


class ItemNotFoundError(FashionSearchError):
    """No catalogue item has that id."""


class UrlNotAllowedError(InvalidRequestError):
    """An image URL that the server will not fetch: not http(s), or its host resolves to a loopback,
    private, link-local, metadata or otherwise non-public address (unless private fetches are allowed)."""


class UrlFetchError(FashionSearchError):
    """Fetching an image URL failed: unreachable, timed out, too large, too many redirects, or an upstream
    error status (`upstream_status`, None when no HTTP answer came)."""

    def __init__(self, message: str, upstream_status: int | None = None) -> None:
        super().__init__(message)
        self.upstream_status = upstream_status


class QueryNotFoundError(FashionSearchError):
    """No cached search has that query id: never issued, or expired or evicted (the same answer for both)."""
