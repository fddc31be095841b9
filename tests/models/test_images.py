from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from models.errors import ImageDecodeError, ImageTooLargeError, UnsupportedImageTypeError
from models.images import check_media_type, crop_box, decode_image
from tests.helpers import jpeg_bytes

LIMIT = 10_000_000


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims huge dimensions but carries almost no data (a decompression-bomb shape)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))


def test_jpeg_decodes_to_rgb() -> None:
    image = decode_image(jpeg_bytes(Image.new("RGB", (40, 30), (200, 10, 10))), LIMIT)
    assert image.mode == "RGB" and image.size == (40, 30)
    assert image.getpixel((20, 15))[0] > 150


def test_rgba_is_composited_on_white() -> None:
    rgba = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    image = decode_image(png_bytes(rgba), LIMIT)
    assert image.mode == "RGB" and image.getpixel((5, 5)) == (255, 255, 255)


def test_cmyk_jpeg_becomes_rgb() -> None:
    image = decode_image(jpeg_bytes(Image.new("CMYK", (16, 16), (0, 255, 255, 0))), LIMIT)
    red, green, blue = image.getpixel((8, 8))
    assert image.mode == "RGB" and red > 200 and green < 60 and blue < 60


def test_sixteen_bit_greyscale_becomes_rgb() -> None:
    image = decode_image(png_bytes(Image.new("I;16", (8, 8), 65535)), LIMIT)
    assert image.mode == "RGB" and image.getpixel((4, 4))[0] > 240


def test_palette_gif_with_transparency_decodes() -> None:
    gif = Image.new("P", (12, 12), 0)
    buffer = io.BytesIO()
    gif.save(buffer, format="GIF", transparency=0)
    assert decode_image(buffer.getvalue(), LIMIT).mode == "RGB"


def test_exif_orientation_is_applied() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    data = jpeg_bytes(Image.new("RGB", (60, 20), (0, 0, 255)), exif=exif.tobytes())
    assert decode_image(data, LIMIT).size == (20, 60)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "empty"),
        (b"hello, I am text", "not a decodable image"),
        (jpeg_bytes(Image.new("RGB", (64, 64), (1, 2, 3)))[:80], "corrupt or truncated"),
    ],
    ids=["empty", "text", "truncated"],
)
def test_undecodable_bytes_raise_decode_error(data: bytes, fragment: str) -> None:
    with pytest.raises(ImageDecodeError, match=fragment):
        decode_image(data, LIMIT)


def test_unsupported_container_is_refused_before_parsing() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="TIFF")
    with pytest.raises(ImageDecodeError):
        decode_image(buffer.getvalue(), LIMIT)


def test_huge_dimensions_are_refused_without_decoding() -> None:
    with pytest.raises(ImageTooLargeError, match="too large|100000x100000"):
        decode_image(png_header_only(100_000, 100_000), LIMIT)


def test_pixel_limit_is_exact() -> None:
    data = png_bytes(Image.new("RGB", (100, 100)))
    assert decode_image(data, 100 * 100).size == (100, 100)
    with pytest.raises(ImageTooLargeError):
        decode_image(data, 100 * 100 - 1)


@pytest.mark.parametrize(
    "media_type", ["image/jpeg", "image/png; charset=binary", "application/octet-stream", None]
)
def test_accepted_media_types(media_type: str | None) -> None:
    check_media_type(media_type)


@pytest.mark.parametrize("media_type", ["text/plain", "image/svg+xml", "application/pdf", "image/heic"])
def test_refused_media_types(media_type: str) -> None:
    with pytest.raises(UnsupportedImageTypeError, match="unsupported media type"):
        check_media_type(media_type)


def test_crop_box_clamps_and_falls_back() -> None:
    image = Image.new("RGB", (50, 40))
    assert crop_box(image, (10, 5, 30, 25)).size == (20, 20)
    assert crop_box(image, (-10, -10, 500, 500)).size == (50, 40)
    assert crop_box(image, (20, 20, 20, 20)).size == (50, 40)
