"""Domain errors raised by the ML layer. The service maps them to HTTP codes in one table."""

from collections.abc import Iterable


class FashionSearchError(Exception):
    """Base class of every error this project raises on purpose."""


class ImageDecodeError(FashionSearchError):
    """The bytes are not an image we can decode (empty, truncated, corrupt)."""


class UnsupportedImageTypeError(FashionSearchError):
    """The upload declares or is a media type we do not accept."""


class ImageTooLargeError(FashionSearchError):
    """The upload exceeds the byte or pixel limit."""


class WeightsNotFoundError(FashionSearchError):
    """Model weights are not available locally; the message says which file and how to provide it."""


class ModelMismatchError(FashionSearchError):
    """A checkpoint, index or manifest does not match the model it is used with."""


class ConfigError(FashionSearchError):
    """A setting has a value that cannot work."""


ECHO_CHARS = 60  # of a caller's input quoted back in an error message


def shown(value: object, limit: int = ECHO_CHARS) -> str:
    """`repr(value)` for an error message, cut to about `limit` characters: a 900 KB category must not come
    back in full in the 422 that refuses it."""
    text = repr(value)
    if len(text) <= limit:
        return text
    length = f" ({len(value)} characters)" if isinstance(value, str) else ""
    return f"{text[:limit]}...{length}"


def listed(values: Iterable[str], limit: int = 40) -> str:
    """The first `limit` of `values`, comma-separated, and how many more there are."""
    values = list(values)
    more = f" (and {len(values) - limit} more)" if len(values) > limit else ""
    return ", ".join(values[:limit]) + more
