"""Safe decoding of untrusted image bytes.

The format is decided from the magic bytes, never from a declared media type or file name, and PIL is
only ever offered that one parser. Pixel limits are checked from the header before any pixel is
decoded, and a JPEG's scan count (its decode cost per pixel) from its marker stream (models.jpeg_markers).
Pillow's warnings are summarised in one log line per image (models.image_warnings). Output is always an
upright RGB image of the first frame.
"""

from __future__ import annotations

import io
import struct
import threading
from collections.abc import Callable, Iterator

from PIL import Image, ImageOps, UnidentifiedImageError

from models.errors import ImageDecodeError, ImageTooLargeError, UnsupportedImageTypeError
from models.image_warnings import PILLOW_WARNINGS
from models.jpeg_markers import MAX_JPEG_SCANS, check_jpeg_markers

# What we decode (PIL's parsers, and pillow-heif's for HEIF); HEADER_READERS below has one per format.
SUPPORTED_LIST = "JPEG, PNG, WebP, GIF, BMP, HEIC/HEIF"

# Known image formats that we refuse, by signature (offset 0), for a clear 415 message.
UNSUPPORTED_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "BigTIFF"),
    (b"MM\x00+", "BigTIFF"),
    (b"8BPS", "Photoshop PSD"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"\x00\x00\x02\x00", "CUR"),
    (b"%!PS", "PostScript/EPS"),
    (b"\xc5\xd0\xd3\xc6", "EPS"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JPEG XL"),
    (b"\xff\x0a", "JPEG XL"),
    (b"\x8aMNG\r\n\x1a\n", "MNG"),
    (b"qoif", "QOI"),
    (b"DDS ", "DDS"),
    (b"icns", "ICNS"),
    (b"gimp xcf", "GIMP XCF"),
    (b"\x76\x2f\x31\x01", "OpenEXR"),
    (b"#?RADIANCE", "Radiance HDR"),
    (b"\xd7\xcd\xc6\x9a", "WMF"),
    (b"\x59\xa6\x6a\x95", "Sun raster"),
    (b"/* XPM */", "XPM"),
    (b"FLIF", "FLIF"),
    (b"BPG\xfb", "BPG"),
)
HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1"})
HEIF_BRANDS |= {b"msf1", b"mif2"}
AVIF_BRANDS = frozenset({b"avif", b"avis"})
BMP_HEADER_SIZES = frozenset({12, 40, 52, 56, 64, 108, 124})


def sniff_format(data: bytes) -> str:
    """The PIL format name of `data`, from its signature; UnsupportedImageTypeError for anything else.

    A format is recognised only from its complete signature (3 bytes for JPEG, 8 for PNG, 12 for WebP
    and HEIF, 18 for BMP), so a few stray bytes are "not an image" rather than "a broken image"."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[:2] == b"BM" and len(data) >= 18 and struct.unpack("<I", data[14:18])[0] in BMP_HEADER_SIZES:
        return "BMP"
    if data[4:8] == b"ftyp" and len(data) >= 12:
        kind = _iso_media_kind(data)
        if kind == "HEIF":
            return kind
        if kind is not None:
            _refuse(kind)
    for signature, name in UNSUPPORTED_SIGNATURES:
        if data.startswith(signature):
            _refuse(name)
    if _looks_like_svg(data):
        _refuse("SVG")
    raise UnsupportedImageTypeError(f"the upload is not a recognised image format; send {SUPPORTED_LIST}")


def _refuse(name: str) -> None:
    raise UnsupportedImageTypeError(f"{name} images are not supported; send {SUPPORTED_LIST}")


def _iso_media_kind(data: bytes) -> str | None:
    """HEIF or AVIF from an ISO-BMFF `ftyp` box (major and compatible brands); None for video etc."""
    box_size = struct.unpack(">I", data[:4])[0]
    brands = [data[8:12]] + [data[i : i + 4] for i in range(16, min(box_size, len(data), 64) - 3, 4)]
    if any(brand in AVIF_BRANDS for brand in brands):
        return "AVIF"
    if any(brand in HEIF_BRANDS for brand in brands):
        return "HEIF"
    return None


def _looks_like_svg(data: bytes) -> bool:
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith((b"<?xml", b"<svg", b"<!--", b"<!doctype svg")) and b"<svg" in head


def header_size(data: bytes, image_format: str) -> tuple[int, int] | None:
    """The pixel size that the header promises, read before PIL is called: PIL's WebP and GIF parsers
    allocate canvas memory while opening, and libheif allocates by the largest `ispe` box while PIL
    reports the (smaller) size after cropping. None where the header does not say; the size PIL
    reports after opening is checked as well."""
    return HEADER_READERS[image_format](data)


def _png_size(data: bytes) -> tuple[int, int] | None:
    if len(data) < 24 or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """From the first start-of-frame marker (SOF0-SOF15 less DHT, JPG and DAC)."""
    position = 2
    while position + 9 <= len(data) and data[position] == 0xFF:
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
        elif marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            position += 2
        elif 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[position + 5 : position + 9])
            return width, height
        else:
            position += 2 + struct.unpack(">H", data[position + 2 : position + 4])[0]
    return None


def _bmp_size(data: bytes) -> tuple[int, int] | None:
    if data[14:18] == b"\x0c\0\0\0" and len(data) >= 22:  # OS/2 1.x header: unsigned 16-bit
        width, height = struct.unpack("<HH", data[18:22])
        return width, height
    if len(data) >= 26:
        width, height = struct.unpack("<ii", data[18:26])
        return width, abs(height)  # a negative height means top-down rows
    return None


def _gif_size(data: bytes) -> tuple[int, int] | None:
    """Logical screen grown to the first frame's extent, as PIL grows it."""
    if len(data) < 13:
        return None
    width, height, flags = struct.unpack("<HHB", data[6:11])
    position = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    while position < len(data):
        if data[position] == 0x2C and position + 9 <= len(data):  # image descriptor
            x, y, w, h = struct.unpack("<HHHH", data[position + 1 : position + 9])
            return max(width, x + w), max(height, y + h)
        if data[position] != 0x21:  # not an extension: trailer or junk
            break
        position += 2
        while position < len(data) and data[position]:  # skip the extension's sub-blocks
            position += data[position] + 1
        position += 1
    return width, height


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30:
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25:
        bits = struct.unpack("<I", data[21:25])[0]
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    return None


def _heif_size(data: bytes) -> tuple[int, int] | None:
    """The largest image spatial extent (`ispe`) declared anywhere under meta/iprp/ipco."""
    sizes = list(_ispe_sizes(data, 0, len(data), depth=0))
    return max(sizes, key=lambda size: size[0] * size[1]) if sizes else None


def _ispe_sizes(data: bytes, start: int, end: int, depth: int) -> Iterator[tuple[int, int]]:
    position = start
    while position + 8 <= end and depth < 4:
        size, kind = struct.unpack(">I4s", data[position : position + 8])
        header = 8
        if size == 1 and position + 16 <= end:
            size, header = struct.unpack(">Q", data[position + 8 : position + 16])[0], 16
        elif size == 0:
            size = end - position
        if size < header:
            return
        body, stop = position + header, min(position + size, end)
        if kind == b"ispe" and stop - body >= 12:
            width, height = struct.unpack(">II", data[body + 4 : body + 12])
            yield width, height
        elif kind in (b"meta", b"iprp", b"ipco"):
            yield from _ispe_sizes(data, body + 4 if kind == b"meta" else body, stop, depth + 1)
        position += size


HEADER_READERS: dict[str, Callable[[bytes], tuple[int, int] | None]] = {
    "JPEG": _jpeg_size,
    "PNG": _png_size,
    "GIF": _gif_size,
    "WEBP": _webp_size,
    "BMP": _bmp_size,
    "HEIF": _heif_size,
}


def check_pixels(size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise ImageDecodeError(f"the image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"the image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}"
        )


class HeifPlugin:
    """Registers pillow-heif's PIL opener on first use, once, under a lock (requests decode in threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._registered = False

    def enable(self) -> None:
        if self._registered:
            return
        with self._lock:
            if self._registered:
                return
            try:
                import pillow_heif
            except ImportError as exc:
                raise UnsupportedImageTypeError(
                    "HEIC support needs pillow-heif installed (pip install pillow-heif); "
                    "meanwhile send JPEG, PNG, WebP, GIF or BMP"
                ) from exc
            # Only the primary image: no thumbnails, depth maps or auxiliary images.
            pillow_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)
            self._registered = True


HEIF_PLUGIN = HeifPlugin()

# What PIL and its plugins raise on malformed input: PIL uses SyntaxError for "not this format",
# pillow-heif RuntimeError for libheif errors (e.g. its own size limit).
DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, RuntimeError, struct.error)


def decode_image(data: bytes, max_pixels: int, max_jpeg_scans: int = MAX_JPEG_SCANS) -> Image.Image:
    """Decode untrusted bytes into an upright RGB image of the first frame, refusing anything over
    `max_pixels` and JPEGs with more than `max_jpeg_scans` scans. Raises only ImageDecodeError (422),
    ImageTooLargeError (413) and UnsupportedImageTypeError (415)."""
    if not data:
        raise ImageDecodeError("the image is empty (0 bytes)")
    image_format = sniff_format(data)
    if image_format == "JPEG":
        check_jpeg_markers(data, max_jpeg_scans)  # before our header reader and PIL walk the markers
    if image_format == "HEIF":
        HEIF_PLUGIN.enable()
    declared = header_size(data, image_format)
    if declared is not None:
        check_pixels(declared, max_pixels)
    with PILLOW_WARNINGS.summarised(image_format):
        return _decode(data, image_format, max_pixels)


def _decode(data: bytes, image_format: str, max_pixels: int) -> Image.Image:
    try:
        image: Image.Image = Image.open(io.BytesIO(data), formats=(image_format,))
        check_pixels(image.size, max_pixels)
        image.seek(0)  # animated GIF/WebP/APNG: the first frame
        image.load()
        check_pixels(image.size, max_pixels)  # HEIF may only know its final size after decoding
        return to_rgb(ImageOps.exif_transpose(image))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(f"the image is too large to decode safely: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise ImageDecodeError(f"the bytes start like {image_format} but are not a valid image") from exc
    except DECODE_ERRORS as exc:
        raise ImageDecodeError(f"the {image_format} image is corrupt or truncated: {exc}") from exc


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB; transparency is composited over white (product shots)."""
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        # 16-bit and float greyscale: scale into 8 bits first (a plain convert would clip at 255).
        image = (image.convert("I") if image.mode.startswith("I;16") else image).point(lambda v: v / 256)
        image = image.convert("L")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def crop_box(image: Image.Image, box: tuple[int, int, int, int]) -> Image.Image:
    """Crop a garment box, clamped to the image; a degenerate box falls back to the whole image."""
    x0, y0, x1, y1 = box
    width, height = image.size
    x0, y0 = max(0, min(x0, width)), max(0, min(y0, height))
    x1, y1 = max(0, min(x1, width)), max(0, min(y1, height))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return image
    return image.crop((x0, y0, x1, y1))
