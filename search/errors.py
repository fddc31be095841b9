"""Query-time errors shared by the HTTP service and the CLI (the service maps them to HTTP codes)."""

from __future__ import annotations

from models.errors import FashionSearchError


class SearchDeadlineError(FashionSearchError):
    """The search ran past its deadline; it stopped at the next stage boundary."""


class InvalidRequestError(FashionSearchError):
    """A request parameter is out of range."""


class ItemNotFoundError(FashionSearchError):
    """No catalogue item has that id."""
