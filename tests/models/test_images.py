from __future__ import annotations

import io
import logging
import struct
import sys
import threading
import time
import warnings
import zlib

import pytest
from PIL import Image, TiffImagePlugin

from models import images
from models.errors import ImageDecodeError, ImageTooLargeError, UnsupportedImageTypeError
from models.images import HeifPlugin, crop_box, decode_image, sniff_format, to_rgb
from tests.helpers import jpeg_bytes
from tests.models.test_hostile_images import (
    animated,
    encode,
    exif_flood_png,
    heic,
    heic_encoder_available,
    png,
)

needs_heic_encoder = pytest.mark.skipif(
    not heic_encoder_available(), reason="this pillow-heif wheel has no HEIC encoder to make test files"
)

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


def test_sixteen_bit_greyscale_is_scaled_not_clipped() -> None:
    image = decode_image(png_bytes(Image.new("I;16", (8, 8), 40_000)), LIMIT)
    assert image.mode == "RGB" and image.getpixel((4, 4)) == (156, 156, 156)  # 40000 / 256


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I;16L", "I", "F"])
def test_every_wide_greyscale_mode_converts(mode: str) -> None:
    assert to_rgb(Image.new(mode, (2, 2), 40_000)).getpixel((0, 0)) == (156, 156, 156)


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


def test_greyscale_jpeg_becomes_rgb() -> None:
    image = decode_image(jpeg_bytes(Image.new("L", (8, 8), 90)), LIMIT)
    assert image.mode == "RGB" and abs(image.getpixel((4, 4))[0] - 90) <= 2


def test_sixteen_bit_rgb_png_keeps_its_colour() -> None:
    row = b"\0" + struct.pack(">3H", 65535, 0, 32768)
    image = decode_image(png(1, 1, zlib.compress(row), bit_depth=16), LIMIT)
    assert image.mode == "RGB" and image.getpixel((0, 0)) == (255, 0, 128)


@pytest.mark.parametrize(
    ("image", "options"),
    [
        (Image.new("LA", (6, 6), (0, 0)), {}),
        (Image.new("L", (6, 6), 40), {"transparency": 40}),
        (Image.new("RGB", (6, 6), (1, 2, 3)), {"transparency": (1, 2, 3)}),
        (
            Image.new("RGB", (6, 6), (9, 9, 9)).convert("P", palette=Image.Palette.ADAPTIVE),
            {"transparency": 0},
        ),
    ],
    ids=["LA", "L+tRNS", "RGB+tRNS", "P+tRNS"],
)
def test_every_kind_of_transparency_is_white(image: Image.Image, options: dict[str, object]) -> None:
    assert decode_image(encode(image, "PNG", **options), LIMIT).getpixel((3, 3)) == (255, 255, 255)


@pytest.mark.parametrize("image_format", ["BMP", "PNG", "GIF"])
def test_one_bit_and_palette_images_become_rgb(image_format: str) -> None:
    one_bit = Image.new("1", (8, 8), 1)
    assert decode_image(encode(one_bit, image_format), LIMIT).getpixel((4, 4)) == (255, 255, 255)
    palette = Image.new("RGB", (8, 8), (0, 200, 0)).convert("P", palette=Image.Palette.ADAPTIVE)
    assert decode_image(encode(palette, image_format), LIMIT).getpixel((4, 4))[1] > 180


@pytest.mark.parametrize("image_format", ["GIF", "WEBP", "PNG"])
def test_animations_give_their_first_frame(image_format: str) -> None:
    data = animated(image_format)
    assert Image.open(io.BytesIO(data)).n_frames == 2
    red, green, blue = decode_image(data, LIMIT).getpixel((8, 6))
    assert red > 200 and blue < 50


@pytest.mark.parametrize(
    ("orientation", "size", "corner"),
    [(1, (60, 20), "top-left"), (2, (60, 20), "top-right"), (3, (60, 20), "bottom-right"),
     (4, (60, 20), "bottom-left"), (5, (20, 60), "top-left"), (6, (20, 60), "top-right"),
     (7, (20, 60), "bottom-right"), (8, (20, 60), "bottom-left"), (0, (60, 20), "top-left"),
     (9, (60, 20), "top-left")],
)  # fmt: skip
def test_every_exif_orientation(orientation: int, size: tuple[int, int], corner: str) -> None:
    """The red corner of a 60x20 picture lands where a viewer shows it; 0 and 9 are invalid (ignored)."""
    picture = Image.new("RGB", (60, 20), (0, 0, 255))
    picture.paste((255, 0, 0), (0, 0, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = orientation
    image = decode_image(encode(picture, "PNG", exif=exif.tobytes()), LIMIT)
    assert image.size == size
    width, height = size
    x = 2 if corner.endswith("left") else width - 3
    y = 2 if corner.startswith("top") else height - 3
    assert image.getpixel((x, y)) == (255, 0, 0)


@pytest.mark.parametrize(
    ("data", "image_format"),
    [
        (b"\xff\xd8\xff\xe0", "JPEG"),
        (b"\x89PNG\r\n\x1a\n", "PNG"),
        (b"GIF87a", "GIF"),
        (b"RIFF\0\0\0\0WEBPVP8 ", "WEBP"),
        (b"BM" + bytes(12) + b"(\0\0\0", "BMP"),
        (b"\0\0\0\x18ftypheic\0\0\0\0mif1heic", "HEIF"),
        (b"\0\0\0\x1cftypmif1\0\0\0\0mif1heic", "HEIF"),
    ],
)
def test_formats_are_sniffed_from_magic_bytes(data: bytes, image_format: str) -> None:
    assert sniff_format(data) == image_format


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"II*\x00" + bytes(20), "TIFF images are not supported"),
        (b"8BPS\x00\x01", "Photoshop PSD"),
        (b"%!PS-Adobe-3.0 EPSF-3.0", "EPS"),
        (b"\0\0\1\0\1\0", "ICO"),
        (b"\xef\xbb\xbf <?xml version='1.0'?><svg/>", "SVG"),
        (b"\0\0\0\x1cftypavif\0\0\0\0avifmif1miaf", "AVIF"),
        (b"hello, I am text", "not a recognised image"),
        (b"%PDF-1.7\n", "not a recognised image"),
        (b"PK\x03\x04", "not a recognised image"),
        (b"<html><img src=x></html>", "not a recognised image"),
        (b"\0\0\0\x18ftypisom\0\0\2\0isomiso2", "not a recognised image"),
        (b"BMW owners club", "not a recognised image"),
        (b"\xff\xd8", "not a recognised image"),
    ],
)
def test_other_bytes_are_unsupported_media(data: bytes, fragment: str) -> None:
    with pytest.raises(UnsupportedImageTypeError, match=fragment) as raised:
        decode_image(data, LIMIT)
    assert "JPEG, PNG, WebP, GIF, BMP, HEIC/HEIF" in str(raised.value)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "empty"),
        (jpeg_bytes(Image.new("RGB", (64, 64), (1, 2, 3)))[:80], "JPEG image is corrupt or truncated"),
        (b"\x89PNG\r\n\x1a\n" + jpeg_bytes(Image.new("RGB", (8, 8)))[8:], "PNG"),
        (b"GIF89a\0\0\0\0\0\0\0;", "no pixels"),
    ],
    ids=["empty", "truncated", "png-magic-jpeg-body", "zero-size"],
)
def test_broken_images_raise_decode_error(data: bytes, fragment: str) -> None:
    with pytest.raises(ImageDecodeError, match=fragment):
        decode_image(data, LIMIT)


def test_huge_dimensions_are_refused_without_decoding() -> None:
    with pytest.raises(ImageTooLargeError, match="100000x100000"):
        decode_image(png_header_only(100_000, 100_000), LIMIT)


def test_pixel_guard_is_ours_not_pillows() -> None:
    """16M pixels: under PIL's own bomb limit, so only our guard refuses it before decoding."""
    with pytest.raises(ImageTooLargeError, match="4000x4000"):
        decode_image(png_header_only(4000, 4000), LIMIT)


@needs_heic_encoder
def test_heic_photo_decodes_upright_rgb() -> None:
    """pillow-heif turns EXIF orientation 6 into a HEIF rotation (and resets the EXIF tag), so the
    photo is rotated exactly once."""
    import pillow_heif

    exif = Image.Exif()
    exif[0x0112] = 6
    picture = Image.new("RGB", (48, 32), (200, 30, 30))
    picture.paste((0, 0, 255), (0, 0, 8, 8))
    buffer = io.BytesIO()
    pillow_heif.from_pillow(picture).save(buffer, quality=90, exif=exif.tobytes())
    image = decode_image(buffer.getvalue(), LIMIT)
    assert image.mode == "RGB" and image.size == (32, 48)
    red, green, blue = image.getpixel((28, 3))  # the blue corner, now top-right
    assert blue > 200 and red < 50
    red, green, blue = image.getpixel((10, 30))
    assert red > 150 and green < 80 and blue < 80


@needs_heic_encoder
def test_heic_pixel_limit_holds() -> None:
    data = heic(Image.new("RGB", (64, 64), (0, 0, 200)))
    assert decode_image(data, 64 * 64).size == (64, 64)
    with pytest.raises(ImageTooLargeError):
        decode_image(data, 64 * 64 - 1)


def test_heic_without_pillow_heif_is_unsupported(monkeypatch: pytest.MonkeyPatch) -> None:
    data = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + bytes(64)  # refused before any parsing
    monkeypatch.setattr(images, "HEIF_PLUGIN", HeifPlugin())
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # makes `import pillow_heif` fail
    with pytest.raises(UnsupportedImageTypeError, match="HEIC support needs pillow-heif installed"):
        decode_image(data, LIMIT)


def test_heif_opener_is_registered_once_across_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    import pillow_heif

    calls: list[dict[str, object]] = []

    def slow_register(**options: object) -> None:
        time.sleep(0.01)
        calls.append(options)

    monkeypatch.setattr(pillow_heif, "register_heif_opener", slow_register)
    plugin = HeifPlugin()
    threads = [threading.Thread(target=plugin.enable) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    plugin.enable()
    assert calls == [{"thumbnails": False, "depth_images": False, "aux_images": False}]


def test_pixel_limit_is_exact() -> None:
    data = png_bytes(Image.new("RGB", (100, 100)))
    assert decode_image(data, 100 * 100).size == (100, 100)
    with pytest.raises(ImageTooLargeError):
        decode_image(data, 100 * 100 - 1)


def test_crop_box_clamps_and_falls_back() -> None:
    image = Image.new("RGB", (50, 40))
    assert crop_box(image, (10, 5, 30, 25)).size == (20, 20)
    assert crop_box(image, (-10, -10, 500, 500)).size == (50, 40)
    assert crop_box(image, (20, 20, 20, 20)).size == (50, 40)


def registry_size() -> int:
    """Messages Python remembers having shown from Pillow's TIFF/EXIF code (less its version key)."""
    return len(set(getattr(TiffImagePlugin, "__warningregistry__", {})) - {"version"})


def summaries(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == "models.image_warnings"]


def test_exif_flood_logs_one_summary_line(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str], recwarn: pytest.WarningsRecorder
) -> None:
    """2,000 bad EXIF entries: Pillow warns 2,000 times (each message distinct, so Python's once-per-
    message filter let all through: 65,535 entries wrote 13 MB). Now one log line, nothing on stderr,
    nothing left in the warning registry."""
    registry = registry_size()
    with caplog.at_level(logging.WARNING):
        assert decode_image(exif_flood_png(2000), LIMIT).size == (16, 16)
    assert summaries(caplog) == [
        "2000 Pillow warning(s) while decoding a PNG image, the first: "
        "UserWarning: Tag data larger than file. Skipping tag 1"
    ]
    assert len(caplog.records) == 1 and not capsys.readouterr().err
    assert len(recwarn) == 0 and registry_size() <= registry


def test_clean_images_log_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        decode_image(jpeg_bytes(Image.new("RGB", (8, 8))), LIMIT)
    assert not caplog.records


def test_warnings_are_summarised_per_thread(caplog: pytest.LogCaptureFixture) -> None:
    """Four concurrent floods of different sizes and clean decodes: each flood is counted in its own
    thread's line, and a warning raised outside any decode is passed on as before."""
    errors: list[BaseException] = []

    def decode(data: bytes) -> None:
        try:
            for _ in range(3):
                decode_image(data, LIMIT)
        except BaseException as exc:  # a thread's failure must fail the test
            errors.append(exc)

    sizes = (500, 600, 700, 800)
    payloads = [exif_flood_png(n) for n in sizes] + [png_bytes(Image.new("RGB", (8, 8)))] * 2
    with caplog.at_level(logging.WARNING), warnings.catch_warnings(record=True) as outside:
        warnings.simplefilter("always")
        threads = [threading.Thread(target=decode, args=(data,)) for data in payloads]
        for thread in threads:
            thread.start()
        warnings.warn("not a decode", UserWarning, stacklevel=1)
        for thread in threads:
            thread.join()
    assert not errors
    counts = sorted(int(line.split()[0]) for line in summaries(caplog))
    assert counts == sorted(sizes * 3)
    assert [str(seen.message) for seen in outside] == ["not a decode"]
