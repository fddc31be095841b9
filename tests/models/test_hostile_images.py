"""Hostile uploads against decode_image: a generated corpus with an expected outcome per file, guard
tests that fail when a protection is removed, and a bounded hypothesis fuzz run.

Counts (asserted in test_corpus_size_is_recorded): the corpus holds 324 files with pillow-heif's HEIC
encoder present, 290 without; the fuzz run tries FUZZ_EXAMPLES = 4,000 examples, derandomized so CI
repeats the same inputs.
decode_image may only return an RGB image or raise ImageDecodeError, ImageTooLargeError or
UnsupportedImageTypeError: any other exception fails these tests.
"""

from __future__ import annotations

import functools
import io
import random
import struct
import time
import zipfile
import zlib
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile

from models import images
from models.errors import ImageDecodeError, ImageTooLargeError, UnsupportedImageTypeError
from models.images import decode_image
from models.jpeg_markers import MAX_JPEG_SCANS, count_markers
from tests.helpers import garment_image

LIMIT = 1_000_000  # the service tests' max_image_pixels, so both suites share expectations
OK, DECODE, LARGE, UNSUPPORTED = "ok", "decode", "large", "unsupported"
ERRORS = {ImageDecodeError: DECODE, ImageTooLargeError: LARGE, UnsupportedImageTypeError: UNSUPPORTED}
# Bytes needed before the format is recognised; shorter prefixes are "not an image".
SIGNATURE_LENGTHS = {"jpeg": 3, "png": 8, "gif": 6, "webp": 12, "bmp": 18, "heic": 12, "apng": 8}
FUZZ_RANDOM, FUZZ_MUTATIONS, FUZZ_MAGIC_TAILS = 1000, 2000, 1000
FUZZ_EXAMPLES = FUZZ_RANDOM + FUZZ_MUTATIONS + FUZZ_MAGIC_TAILS
# PIL warns about the corrupt EXIF blocks that mutations produce; that is expected, not a finding.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL.TiffImagePlugin")
FUZZ_SETTINGS = settings(
    deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow]
)


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes
    allowed: frozenset[str]


def outcome(data: bytes, max_pixels: int = LIMIT) -> str:
    """What decode_image did; an unexpected exception type propagates and fails the test."""
    try:
        image = decode_image(data, max_pixels)
    except (ImageDecodeError, ImageTooLargeError, UnsupportedImageTypeError) as exc:
        return ERRORS[type(exc)]
    assert image.mode == "RGB" and image.width >= 1 and image.height >= 1
    assert image.width * image.height <= max_pixels
    return OK


def encode(image: Image.Image, image_format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def animated(image_format: str) -> bytes:
    """Two frames: red, then blue. The decoder must return the red one."""
    red, blue = Image.new("RGB", (16, 12), (255, 0, 0)), Image.new("RGB", (16, 12), (0, 0, 255))
    return encode(red, image_format, save_all=True, append_images=[blue], duration=50, loop=0)


def heic_encoder_available() -> bool:
    try:
        import pillow_heif
    except ImportError:
        return False
    return bool(pillow_heif.libheif_info().get("HEIF"))


def heic(image: Image.Image, quality: int = 80) -> bytes:
    import pillow_heif

    buffer = io.BytesIO()
    pillow_heif.from_pillow(image).save(buffer, quality=quality)
    return buffer.getvalue()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png(
    width: int, height: int, idat: bytes, bit_depth: int = 8, colour: int = 2, extra: bytes = b""
) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    chunks = png_chunk(b"IHDR", header) + extra + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


def gif(screen: tuple[int, int], frame: tuple[int, int], disposal: int = 0) -> bytes:
    """A GIF whose first frame may lie outside a tiny logical screen (PIL then grows the canvas)."""
    head = b"GIF89a" + struct.pack("<HHBBB", *screen, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
    control = b"\x21\xf9\x04" + bytes([disposal << 2, 0, 0, 0]) + b"\0"
    descriptor = b"\x2c" + struct.pack("<HHHHB", 0, 0, *frame, 0)
    return head + control + descriptor + b"\x02\x02\x4c\x01\x00\x3b"


def webp_vp8x(width: int, height: int) -> bytes:
    body = b"VP8X" + struct.pack("<I", 10) + b"\0\0\0\0"
    body += (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return b"RIFF" + struct.pack("<I", len(body) + 4) + b"WEBP" + body


def patched(data: bytes, marker: bytes, skip: int, fmt: str, *values: int) -> bytes:
    """Overwrite the fields that follow `marker` (+ `skip` bytes) with `values`."""
    at = data.index(marker) + skip
    field = struct.pack(fmt, *values)
    return data[:at] + field + data[at + len(field) :]


def exif_jpeg(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(Image.new("RGB", (30, 10), (0, 90, 200)), "JPEG", exif=exif.tobytes())


def jpeg_segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


def scan_bomb(width: int, height: int, scans: int, between_scans: bytes = b"") -> bytes:
    """A greyscale progressive JPEG of `scans` scans that carry almost no data but each make libjpeg walk
    all 63 coefficients of every 8x8 block: a DC scan (one bit a block), a first AC scan, then AC
    refinement scans, each a few runs of 32,767 empty blocks (EOB14 and 14 one bits). 6000x6000 with 500
    scans is 100 KB and took 12 s to decode. `between_scans` goes after each scan's data."""
    blocks = -(-width // 8) * -(-height // 8)
    bits = ("0" + "1" * 14) * -(-blocks // 32767)
    bits += "1" * (-len(bits) % 8)  # pad with one bits, as encoders do
    runs = int(bits, 2).to_bytes(len(bits) // 8, "big").replace(b"\xff", b"\xff\x00")

    def table(kind: int, symbol: int) -> bytes:  # one symbol with the one-bit code "0"
        return jpeg_segment(0xC4, bytes([kind, 1] + [0] * 15 + [symbol]))

    def scan(header: bytes, data: bytes) -> bytes:
        return jpeg_segment(0xDA, b"\x01\x01\x00" + header) + data + between_scans

    head = jpeg_segment(0xDB, b"\x00" + bytes([1] * 64))
    head += jpeg_segment(0xC2, struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00")
    head += table(0x00, 0x00) + table(0x10, 0xE0)  # DC: difference 0; AC: EOB run of 2**14 and more
    body = scan(b"\x00\x00\x00", bytes(-(-blocks // 8))) + scan(b"\x01\x3f\x01", runs)
    body += scan(b"\x01\x3f\x10", runs) * (scans - 2)
    return b"\xff\xd8" + head + body + b"\xff\xd9"


def exif_flood_png(entries: int) -> bytes:
    """A 16x16 PNG whose EXIF IFD has `entries` tags that each claim 1 GB of data: Pillow warns once
    per tag, with the tag in the message (65,535 entries: 786 KB, 13 MB of warnings)."""
    ifd = b"MM\x00*\x00\x00\x00\x08" + struct.pack(">H", entries)
    ifd += b"".join(struct.pack(">HHII", 1 + tag, 4, 0x10000000, 8) for tag in range(entries))
    return encode(Image.new("RGB", (16, 16), (10, 120, 200)), "PNG", exif=ifd + bytes(4))


@functools.cache
def valid_images() -> dict[str, bytes]:
    photo = garment_image(3)
    rgba = photo.convert("RGBA")
    rgba.putalpha(128)
    found = {
        "jpeg": encode(photo, "JPEG"),
        "jpeg_progressive": encode(photo, "JPEG", progressive=True),
        "jpeg_grey": encode(photo.convert("L"), "JPEG"),
        "jpeg_cmyk": encode(photo.convert("CMYK"), "JPEG"),
        "mpo": encode(photo, "MPO"),
        "png": encode(photo, "PNG"),
        "png_rgba": encode(rgba, "PNG"),
        "png_la": encode(rgba.convert("LA"), "PNG"),
        "png_palette_transparent": encode(photo.convert("P"), "PNG", transparency=0),
        "png_1bit": encode(photo.convert("1"), "PNG"),
        "png_16bit_grey": encode(Image.new("I;16", (9, 7), 40_000), "PNG"),
        "png_16bit_rgb": png(
            2, 1, zlib.compress(b"\0" + struct.pack(">6H", 65535, 0, 32768, 0, 65535, 0)), 16
        ),
        "png_grey_trns": encode(photo.convert("L"), "PNG", transparency=40),
        "apng": animated("PNG"),
        "gif": encode(photo, "GIF"),
        "gif_transparent": encode(photo.convert("P"), "GIF", transparency=0),
        "gif_animated": animated("GIF"),
        "webp": encode(photo, "WEBP"),
        "webp_lossless_rgba": encode(rgba, "WEBP", lossless=True),
        "webp_animated": animated("WEBP"),
        "bmp": encode(photo, "BMP"),
        "bmp_rgba": encode(rgba, "BMP"),
        "bmp_1bit": encode(photo.convert("1"), "BMP"),
        "bmp_palette": encode(photo.convert("P"), "BMP"),
        "png_1x1": encode(Image.new("RGB", (1, 1)), "PNG"),
        "gif_1x1": encode(Image.new("P", (1, 1)), "GIF"),
        "jpeg_1x1": encode(Image.new("RGB", (1, 1)), "JPEG"),
        "png_65535x1": encode(Image.new("L", (65535, 1), 7), "PNG"),
        "png_1x65535": encode(Image.new("L", (1, 65535), 7), "PNG"),
        "png_at_pixel_limit": png(1000, 1000, zlib.compress(b"\0" * 3001 * 1000, 9)),
        **{f"jpeg_exif_orientation_{value}": exif_jpeg(value) for value in (0, 1, 2, 3, 4, 5, 6, 7, 8, 9)},
    }
    if heic_encoder_available():
        found["heic"] = heic(photo)
        found["heic_rgba"] = heic(rgba)
    return found


@functools.cache
def not_images() -> dict[str, bytes]:
    photo = garment_image(4)
    png_bytes, jpeg_bytes = valid_images()["png"], valid_images()["jpeg"]
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as bundle:
        bundle.writestr("photo.png", png_bytes)
    rng = random.Random(5)
    return {
        "text": b"hello, I am a text file, not a photo\n",
        "html": b"<!doctype html><html><body><img src=x onerror=alert(1)></body></html>",
        "json": b'{"image": "photo.jpg"}',
        "svg": b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>',
        "pdf": encode(photo, "PDF"),
        "pdf_with_jpeg": b"%PDF-1.4\n" + jpeg_bytes + b"\n%%EOF\n",
        "zip_with_png": archive.getvalue(),
        "gzip": b"\x1f\x8b\x08\x00" + zlib.compress(png_bytes),
        "html_then_png": b"<html>" + png_bytes,
        "mp4_ftyp": b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + bytes(64),
        "tiff": encode(photo, "TIFF"),
        "tiff_magic_png_tail": b"II*\x00" + png_bytes[4:],
        "ico_with_png": encode(photo, "ICO"),
        "eps": encode(photo, "EPS"),
        "psd_magic": b"8BPS\x00\x01" + bytes(200),
        "jpeg2000": encode(photo, "JPEG2000"),
        "avif": encode(photo, "AVIF"),
        "qoi": encode(photo, "QOI"),
        "tga": encode(photo, "TGA"),
        "pcx": encode(photo, "PCX"),
        "ppm": encode(photo, "PPM"),
        "dds": encode(photo.convert("RGBA"), "DDS"),
        "sgi": encode(photo, "SGI"),
        "bmp_word_not_bitmap": b"BMW owners club newsletter, issue 7",
        "one_byte": b"\xff",
        "two_bytes_jpeg_prefix": b"\xff\xd8",
        "png_prefix": b"\x89PNG",
        "zeros": bytes(1024),
        "ones": b"\xff" * 1024,
        **{f"random_{size}": rng.randbytes(size) for size in (1, 7, 100, 1000, 50_000)},
    }


@functools.cache
def broken_images() -> dict[str, bytes]:
    """Recognised by their magic, but undecodable: 422."""
    valid = valid_images()
    return {
        "jpeg_soi_eoi_only": b"\xff\xd8\xff\xd9",
        "jpeg_markers_only": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\xff\xd9",
        "png_signature_only": b"\x89PNG\r\n\x1a\n",
        "png_magic_jpeg_body": b"\x89PNG\r\n\x1a\n" + valid["jpeg"][8:],
        "gif_magic_png_body": b"GIF89a" + valid["png"][6:],
        "gif_header_only": b"GIF89a",
        "webp_header_only": b"RIFF\x04\x00\x00\x00WEBP",
        "bmp_header_only": valid["bmp"][:26],
        "png_zero_by_zero": png(0, 0, zlib.compress(b"")),
        "png_zero_wide": png(0, 10, zlib.compress(b"\0" * 10)),
        "gif_zero_by_zero": b"GIF89a" + struct.pack("<HHBBB", 0, 0, 0, 0, 0) + b"\x3b",
        "bmp_zero_by_zero": patched(valid["bmp"], b"BM", 18, "<ii", 0, 0),
        "jpeg_sof_zero": patched(valid["jpeg"], b"\xff\xc0", 5, ">HH", 0, 0),
        "png_bad_crc": valid["png"][:29] + b"\0\0\0\0" + valid["png"][33:],
    }


@functools.cache
def huge_images() -> dict[str, bytes]:
    """Small files whose headers promise more pixels than the limit: 413 before any decoding."""
    valid = valid_images()
    found = {
        "png_100000x100000": png(100_000, 100_000, zlib.compress(b"\0" * 64)),
        "png_4000x4000_under_pillow_limit": png(4000, 4000, zlib.compress(b"\0" * 64)),
        "png_65535x65535": png(65535, 65535, zlib.compress(b"\0" * 64)),
        "png_max_dimensions": png(2**31 - 1, 2**31 - 1, zlib.compress(b"\0" * 64)),
        "png_65535_wide_1001_high": png(65535, 1001, zlib.compress(b"\0" * 64)),
        "gif_screen_65535x65535": gif((65535, 65535), (1, 1)),
        "gif_frame_outside_screen": gif((1, 1), (65535, 65535), disposal=2),
        "gif_frame_just_over_limit": gif((1, 1), (1001, 1000), disposal=2),
        "webp_canvas_16384x16384": webp_vp8x(16384, 16384),
        "webp_canvas_just_over_limit": webp_vp8x(1001, 1000),
        "bmp_30000x30000": patched(valid["bmp"], b"BM", 18, "<ii", 30000, 30000),
        "jpeg_60000x60000": patched(valid["jpeg"], b"\xff\xc0", 5, ">HH", 60000, 60000),
        "png_bomb_1001x1000": png(1001, 1000, zlib.compress(b"\0" * 3004 * 1000, 9)),
    }
    if "heic" in valid:
        found["heic_ispe_4000x4000"] = patched(valid["heic"], b"ispe", 8, ">II", 4000, 4000)
        found["heic_1100x1000"] = heic(Image.new("RGB", (1100, 1000), (200, 30, 30)), quality=10)
    return found


@functools.cache
def tricky_valid_images() -> dict[str, bytes]:
    """Decodable despite extras (polyglots, nesting, odd EXIF, bombs in side chunks): 200 or 422."""
    valid = valid_images()
    loop = b"Exif\0\0MM\0*\0\0\0\x08\0\x01\x87\x69\0\x04\0\0\0\x01\0\0\0\x08\0\0\0\0"  # IFD points at itself
    bomb_text = png_chunk(b"zTXt", b"k\0\0" + zlib.compress(b"A" * 50_000_000, 9))
    return {
        "gif_then_zip": valid["gif"] + not_images()["zip_with_png"],
        "png_then_html": valid["png"] + b"<script>alert(1)</script>",
        "jpeg_then_png": valid["jpeg"] + valid["png"],
        "png_with_jpeg_in_text_chunk": valid["png"][:33] + png_chunk(b"tEXt", b"x\0" + valid["jpeg"])
        + valid["png"][33:],
        "jpeg_with_png_in_comment": valid["jpeg"][:2] + b"\xff\xfe" + struct.pack(">H", len(valid["png"]) + 2)
        + valid["png"] + valid["jpeg"][2:],
        "jpeg_exif_ifd_loop": valid["jpeg"][:2] + b"\xff\xe1" + struct.pack(">H", len(loop) + 2) + loop
        + valid["jpeg"][2:],
        "png_ztxt_bomb": valid["png"][:33] + bomb_text + valid["png"][33:],
        "png_idat_bomb_beyond_image": png(10, 10, zlib.compress(b"\0" * 50_000_000, 9)),
    }  # fmt: skip


def truncations(name: str, data: bytes) -> list[Case]:
    sizes = {1, 2, 3, 5, 8, 11, 12, 17, 18, 24, 32, 48, 64, 100, len(data) - 2, len(data) - 1}
    sizes |= {int(len(data) * share) for share in (0.25, 0.5, 0.75, 0.9)}
    signature = SIGNATURE_LENGTHS[name]
    return [
        Case(
            f"{name}_cut_{size}", data[:size], frozenset({UNSUPPORTED} if size < signature else {OK, DECODE})
        )
        for size in sorted(sizes)
        if 0 < size < len(data)
    ]


def bit_flips(name: str, data: bytes, count: int = 10) -> list[Case]:
    rng = random.Random(name)
    cases = []
    for index in range(count):
        mangled = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            mangled[rng.randrange(SIGNATURE_LENGTHS[name], len(data))] ^= 1 << rng.randrange(8)
        cases.append(Case(f"{name}_flip_{index}", bytes(mangled), frozenset({OK, DECODE, LARGE})))
    return cases


@functools.cache
def hostile_corpus() -> tuple[Case, ...]:
    """Every generated file with the outcomes it may have at max_pixels=LIMIT."""
    valid = valid_images()
    cases = [Case("empty", b"", frozenset({DECODE}))]
    groups = ((valid, OK), (not_images(), UNSUPPORTED), (broken_images(), DECODE), (huge_images(), LARGE))
    for group, expected in groups:
        cases += [Case(name, data, frozenset({expected})) for name, data in group.items()]
    cases += [Case(name, data, frozenset({OK, DECODE})) for name, data in tricky_valid_images().items()]
    bases = {"jpeg": valid["jpeg"], "png": valid["png"], "gif": valid["gif_animated"]}
    bases |= {"webp": valid["webp"], "bmp": valid["bmp"], "apng": valid["apng"]}
    if "heic" in valid:
        bases["heic"] = valid["heic"]
    for name, data in bases.items():
        cases += truncations(name, data) + bit_flips(name, data)
    return tuple(cases)


def test_corpus_size_is_recorded() -> None:
    assert len(hostile_corpus()) == (324 if heic_encoder_available() else 290)
    assert len({case.name for case in hostile_corpus()}) == len(hostile_corpus())


@pytest.mark.parametrize("case", hostile_corpus(), ids=lambda case: case.name)
def test_hostile_corpus(case: Case) -> None:
    assert outcome(case.data) in case.allowed


@pytest.mark.parametrize("name", sorted(huge_images()))
def test_huge_headers_are_refused_before_any_decoding(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Refused by our pixel guard (its message, not PIL's bomb check or a failed decode), from the header,
    before PIL is even called: PIL's GIF and WebP parsers allocate while opening, libheif by `ispe`."""
    monkeypatch.setattr(images.Image, "open", lambda *a, **k: pytest.fail(f"{name}: PIL opened it"))
    with pytest.raises(ImageTooLargeError, match=f"the limit is {LIMIT}"):
        decode_image(huge_images()[name], LIMIT)


@pytest.mark.skipif(not heic_encoder_available(), reason="pillow-heif has no HEIC encoder here")
def test_heic_crop_cannot_hide_the_coded_size() -> None:
    """x265 codes a 24x16 photo as 64x64 plus a crop box; libheif allocates the coded 64x64."""
    data = heic(Image.new("RGB", (24, 16), (10, 200, 10)))
    with pytest.raises(ImageTooLargeError, match="64x64"):
        decode_image(data, 24 * 16)
    assert decode_image(data, 64 * 64).size == (24, 16)


def test_the_size_pil_reports_is_checked_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """PIL skips junk between JPEG markers, where the header reader gives up: the size PIL reports
    is checked before it decodes anything."""
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("decoded pixels"))
    data = valid_images()["jpeg"]
    data = patched(data[:20] + b"junk" + data[20:], b"\xff\xc0", 5, ">HH", 4000, 4000)  # after APP0
    assert images.header_size(data, "JPEG") is None
    with pytest.raises(ImageTooLargeError, match="4000x4000"):
        decode_image(data, LIMIT)


@pytest.mark.skipif(not heic_encoder_available(), reason="pillow-heif has no HEIC encoder here")
def test_libheif_errors_are_decode_errors() -> None:
    """With our limit out of the way, libheif's own limit (2**30 pixels) raises RuntimeError."""
    data = patched(heic(Image.new("RGB", (24, 16))), b"ispe", 8, ">II", 64, 2**31)  # cropped to 24x16
    with pytest.raises(ImageDecodeError, match="Security limit"):
        decode_image(data, 2**62)


def test_only_the_sniffed_parser_is_offered(monkeypatch: pytest.MonkeyPatch) -> None:
    offered: list[tuple[str, ...]] = []
    real_open = Image.open
    monkeypatch.setattr(images.Image, "open", lambda fp, formats: offered.append(formats) or real_open(fp))
    decode_image(valid_images()["png"], LIMIT)
    assert offered == [("PNG",)]


def test_progressive_scan_bomb_is_refused_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """6000x6000 with 500 scans: 100 KB that took 12 s of CPU. Refused from its marker stream, fast."""
    data = scan_bomb(6000, 6000, 500)
    monkeypatch.setattr(images.Image, "open", lambda *a, **k: pytest.fail("PIL opened the scan bomb"))
    started = time.perf_counter()
    with pytest.raises(ImageDecodeError, match=f"500 scans; the limit is {MAX_JPEG_SCANS}"):
        decode_image(data, 40_000_000)
    assert time.perf_counter() - started < 0.5


def test_scan_limit_is_exact_and_adjustable() -> None:
    assert decode_image(scan_bomb(64, 48, MAX_JPEG_SCANS), LIMIT).size == (64, 48)
    with pytest.raises(ImageDecodeError, match=f"{MAX_JPEG_SCANS + 1} scans"):
        decode_image(scan_bomb(64, 48, MAX_JPEG_SCANS + 1), LIMIT)
    with pytest.raises(ImageDecodeError, match="12 scans; the limit is 11"):
        decode_image(scan_bomb(64, 48, 12), LIMIT, max_jpeg_scans=11)


@pytest.mark.parametrize(
    "between_scans",
    [b"\xff\xff\xff", b"junk\xff\x00", b"\xff\xd0\xff\xd7\xff\x01", b"\xff\xfe\x00\x00"],
    ids=["fill-bytes", "junk-and-stuffing", "rst-and-tem", "comment-with-length-0"],
)
def test_scans_are_counted_as_libjpeg_reads_them(between_scans: bytes) -> None:
    """Between scans libjpeg skips fill bytes, junk, stuffed zeros, RSTn/TEM and reads on after a
    length under 2: none of them may hide a scan from the count (each variant decodes before the fix)."""
    data = scan_bomb(64, 48, 100, between_scans)
    assert count_markers(data).scans == 100
    with pytest.raises(ImageDecodeError, match="100 scans"):
        decode_image(data, LIMIT)


@pytest.mark.parametrize(
    ("mode", "options", "scans"),
    [
        ("RGB", {}, 1),
        ("RGB", {"progressive": True}, 10),
        ("RGB", {"progressive": True, "optimize": True}, 10),
        ("L", {"progressive": True}, 6),
        ("CMYK", {"progressive": True}, 18),
        ("RGB", {"progressive": True, "restart_marker_blocks": 1}, 10),
        ("L", {"restart_marker_rows": 1}, 1),
    ],
)
def test_real_jpegs_are_counted_exactly_and_decode(mode: str, options: dict[str, object], scans: int) -> None:
    """Noise gives entropy-coded data full of stuffed 0xFF00 bytes (and RSTn with restart markers)."""
    rng = random.Random(7)
    noise = Image.frombytes("RGB", (96, 80), rng.randbytes(96 * 80 * 3)).convert(mode)
    data = encode(noise, "JPEG", quality=95, **options)
    assert b"\xff\x00" in data and count_markers(data).scans == scans
    assert outcome(data) == OK


def test_marker_like_bytes_inside_segments_are_not_scans() -> None:
    """SOS bytes in a comment (or an EXIF thumbnail) are skipped with their segment."""
    data = valid_images()["jpeg_progressive"]
    data = data[:2] + jpeg_segment(0xFE, b"\xff\xda" * 1000) + data[2:]
    assert count_markers(data).scans == 10
    assert outcome(data) == OK


@pytest.mark.parametrize(
    ("junk", "fragment"),
    [(b"\xff\xfe\x00\x02" * 5000, "more than 4096 marker segments"), (b"\xff" * 70_000, "fill or junk")],
    ids=["5000-comments", "70-kB-of-fill"],
)
def test_marker_floods_before_the_first_scan_are_refused(
    junk: bytes, fragment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PIL parses the header in Python, a marker or junk byte at a time: 4 MB of empty comments took
    3.2 s, 2 MB of fill bytes 2.4 s. Both decode before the fix (slowly); now refused unopened."""
    data = valid_images()["jpeg"]
    monkeypatch.setattr(images.Image, "open", lambda *a, **k: pytest.fail("PIL opened the marker flood"))
    with pytest.raises(ImageDecodeError, match=fragment):
        decode_image(data[:2] + junk + data[2:], LIMIT)


def progressive_cuts() -> dict[str, tuple[bytes, str]]:
    data = valid_images()["jpeg_progressive"]
    sos = data.index(b"\xff\xda")
    return {
        "cut_in_a_length": (data[: sos + 3], "not a valid image"),
        "cut_in_the_sos_header": (data[: sos + 7], "corrupt or truncated"),
        "cut_after_the_first_scan": (data[: data.index(b"\xff\xda", sos + 2)], "corrupt or truncated"),
        "length_past_the_end": (data[:4] + b"\xff\xf0" + data[6:], "corrupt or truncated"),
        "no_eoi": (data[:-2], "corrupt or truncated"),
    }


@pytest.mark.parametrize("name", sorted(progressive_cuts()))
def test_broken_marker_streams_keep_their_usual_errors(name: str) -> None:
    data, fragment = progressive_cuts()[name]
    with pytest.raises(ImageDecodeError, match=fragment):
        decode_image(data, LIMIT)


@settings(FUZZ_SETTINGS, max_examples=FUZZ_RANDOM)
@given(st.binary(max_size=4096))
def test_fuzz_random_bytes(data: bytes) -> None:
    outcome(data)


@settings(FUZZ_SETTINGS, max_examples=FUZZ_MUTATIONS)
@given(
    st.sampled_from(sorted(valid_images())),
    st.lists(st.tuples(st.integers(0, 2**20), st.integers(0, 255)), max_size=8),
    st.one_of(st.none(), st.integers(0, 2**20)),
)
def test_fuzz_mutated_images(name: str, edits: list[tuple[int, int]], cut: int | None) -> None:
    data = bytearray(valid_images()[name])
    for position, value in edits:
        data[position % len(data)] = value
    outcome(bytes(data[: None if cut is None else cut % (len(data) + 1)]))


MAGICS = (
    b"\xff\xd8\xff",
    b"\x89PNG\r\n\x1a\n",
    b"GIF89a",
    b"RIFF\0\0\0\0WEBPVP8X",
    b"BM\0\0\0\0\0\0\0\0\0\0\0\0(\0\0\0",
)
MAGICS += (b"\0\0\0\x18ftypheic\0\0\0\0mif1heic",)


@settings(FUZZ_SETTINGS, max_examples=FUZZ_MAGIC_TAILS)
@given(st.sampled_from(MAGICS), st.binary(max_size=1024))
def test_fuzz_known_magic_with_random_tail(magic: bytes, tail: bytes) -> None:
    assert outcome(magic + tail) != UNSUPPORTED
