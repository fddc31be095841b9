"""Safe image decoding: size limits before pixels are decoded, EXIF orientation, RGB output."""

from __future__ import annotations

import io
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

from models.errors import ImageDecodeError, ImageTooLargeError, UnsupportedImageTypeError

# Parsers PIL may try on untrusted bytes. Keeping the list short keeps hostile formats (EPS, PSD...) out.
SUPPORTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")
SUPPORTED_MEDIA_TYPES = frozenset(
    {"image/jpeg", "image/jpg", "image/pjpeg", "image/png", "image/webp", "image/gif", "image/bmp"}
)
# Clients that do not know the type send these; the bytes then decide.
GENERIC_MEDIA_TYPES = frozenset({"", "application/octet-stream"})


def check_media_type(media_type: str | None) -> None:
    """Raise UnsupportedImageTypeError unless the declared media type is an image type we decode."""
    declared = (media_type or "").split(";")[0].strip().lower()
    if declared in GENERIC_MEDIA_TYPES or declared in SUPPORTED_MEDIA_TYPES:
        return
    raise UnsupportedImageTypeError(
        f"unsupported media type {declared!r}; send one of: {', '.join(sorted(SUPPORTED_MEDIA_TYPES))}"
    )


def decode_image(data: bytes, max_pixels: int) -> Image.Image:
    """Decode untrusted bytes into an upright RGB image, refusing anything over `max_pixels`."""
    if not data:
        raise ImageDecodeError("the image is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image: Image.Image = Image.open(io.BytesIO(data), formats=SUPPORTED_FORMATS)
            width, height = image.size
            if width <= 0 or height <= 0:
                raise ImageDecodeError(f"the image has no pixels ({width}x{height})")
            if width * height > max_pixels:
                raise ImageTooLargeError(
                    f"the image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}"
                )
            image.load()
            image = ImageOps.exif_transpose(image)
            return to_rgb(image)
    except (ImageDecodeError, ImageTooLargeError):
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(f"the image is too large to decode safely: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise ImageDecodeError(
            f"the bytes are not a decodable image (supported: {', '.join(SUPPORTED_FORMATS)})"
        ) from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageDecodeError(f"the image is corrupt or truncated: {exc}") from exc


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB; transparency is composited over white (product shots)."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        # 16-bit and float greyscale: scale into 8 bits before converting.
        return image.point(lambda v: v / 256).convert("L").convert("RGB")
    return image.convert("RGB")


def crop_box(image: Image.Image, box: tuple[int, int, int, int]) -> Image.Image:
    """Crop a garment box, clamped to the image; a degenerate box falls back to the whole image."""
    x0, y0, x1, y1 = box
    width, height = image.size
    x0, y0 = max(0, min(x0, width)), max(0, min(y0, height))
    x1, y1 = max(0, min(x1, width)), max(0, min(y1, height))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return image
    return image.crop((x0, y0, x1, y1))
