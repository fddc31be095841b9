"""Domain errors raised by the ML layer. The service maps them to HTTP codes in one table."""


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
