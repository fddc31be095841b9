"""Catalogue images are served from the configured image root only: a stored path that resolves (symlinks
followed) outside it, or to anything but an image file, is not served. Messages never name a path."""

from __future__ import annotations

from pathlib import Path

from service.errors import ImageNotServedError

IMAGE_MEDIA_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".bmp": "image/bmp",
}


def served_image(image_root: Path | None, stored: str) -> tuple[Path, str]:
    """The file to send for an item's stored image path, and its media type."""
    if image_root is None:
        raise ImageNotServedError("image serving is off: the service has no image root configured")
    if not stored or "\x00" in stored:
        raise ImageNotServedError("the item has no image")
    root = image_root.resolve()
    path = Path(stored).resolve()
    media_type = IMAGE_MEDIA_TYPES.get(path.suffix.lower())
    if not path.is_relative_to(root) or media_type is None or not path.is_file():
        raise ImageNotServedError("the item's image is not available from the image root")
    return path, media_type
