"""A bounded walk over a JPEG's marker stream, done before PIL sees the bytes, that refuses files whose
decode cost is out of all proportion to their size.

libjpeg decodes every scan of a progressive JPEG over every block of the component it covers, however
little data the scan holds: a 100 KB file of 6000x6000 pixels with 500 near-empty AC refinement scans
takes 12 s of CPU (about 24 ms a scan here). The number of scans is the multiplier, so it is limited:

- MAX_JPEG_SCANS = 64. Encoders write a fixed script whatever the image size: libjpeg's (and
  libjpeg-turbo's, and PIL's `progressive=True`) standard progression has 6 scans for greyscale, 10 for
  YCbCr and 18 for CMYK, and even for the 10 components that JPEG allows it writes 60; mozjpeg's scan
  optimisation picks about 10; a baseline file has one scan per component at most. 64 is the most any
  standard script writes, rounded up. libjpeg-turbo offers the same guard (`djpeg -maxscans N`,
  TurboJPEG's scan limit) but PIL does not expose it, so the count is taken here. At the limit a
  6000x6000 file costs about 1.5 s, not 12 s.

PIL parses everything before the first scan in Python, one marker or junk byte at a time (4 MB of empty
comment segments took 3.2 s, 2 MB of 0xFF fill bytes 2.4 s), so those are limited too:

- MAX_JPEG_MARKERS = 4096 segments in all; a camera file has about 20, and even an ICC profile split
  into its maximum 255 chunks plus a table pair per scan stays far below.
- MAX_JPEG_HEADER_GAP = 64 KiB of fill or junk bytes between segments before the first scan (real files
  have none or a few; libjpeg warns about every one).

The walk follows libjpeg's marker reader: a marker is 0xFF, any number of 0xFF fill bytes, then a code
that is not 0x00 (0xFF00 is a stuffed data byte inside entropy-coded data). RSTn and TEM carry no length
and are skipped inside the regular expression, as are stuffed bytes, so entropy-coded data is crossed at
C speed. Every marker the loop itself handles moves it at least four bytes on (a length under 2 counts
as 2: libjpeg reads on after it), and it stops once the segment or junk limit is passed, at EOI or a
second SOI (libjpeg stops or fails there), or where the data ends.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from models.errors import ImageDecodeError

MAX_JPEG_SCANS = 64
MAX_JPEG_MARKERS = 4096
MAX_JPEG_HEADER_GAP = 64 * 1024

# 0xFF then a code other than stuffing (00), fill (FF), TEM (01) and RST0-7 (D0-D7). The pattern has a
# fixed width, so the search is linear in the data (a run of FF bytes cannot make it backtrack).
_MARKER = re.compile(rb"\xff[^\x00\x01\xd0-\xd7\xff]")
_SOI, _EOI, _SOS = 0xD8, 0xD9, 0xDA


@dataclass(frozen=True)
class MarkerCounts:
    scans: int  # start-of-scan segments, each one pass of the decoder over its components' blocks
    markers: int  # segments with a length (APPn, COM, DQT, DHT, SOF, SOS, ...)
    header_gap: int  # fill and junk bytes between segments before the first scan


def count_markers(data: bytes) -> MarkerCounts:
    """Count scans, segments and pre-scan junk of the first image in `data` (which starts with SOI),
    stopping early once the segment or junk count passes its limit (so the loop runs at most
    MAX_JPEG_MARKERS + 1 times). Never raises: a broken stream is PIL's to report."""
    scans = markers = gap = 0
    position = 2
    while markers <= MAX_JPEG_MARKERS and gap <= MAX_JPEG_HEADER_GAP:
        found = _MARKER.search(data, position)
        if found is None:
            break
        if scans == 0:
            gap += found.start() - position
        code, after = data[found.start() + 1], found.end()
        if code in (_SOI, _EOI) or after + 2 > len(data):
            break
        length = (data[after] << 8) | data[after + 1]
        markers += 1
        scans += code == _SOS
        # libjpeg (and PIL) read on right after a length under 2 in APPn and COM segments; past an SOS
        # header the next search crosses the scan's entropy-coded data.
        position = after + max(length, 2)
    return MarkerCounts(scans, markers, gap)


def check_jpeg_markers(data: bytes, max_scans: int = MAX_JPEG_SCANS) -> None:
    """ImageDecodeError (422) for a JPEG whose scans, segments or pre-scan junk pass the limits above."""
    counts = count_markers(data)
    if counts.markers > MAX_JPEG_MARKERS:
        raise ImageDecodeError(
            f"the JPEG has more than {MAX_JPEG_MARKERS} marker segments ({counts.scans} scans among the "
            f"first {MAX_JPEG_MARKERS}); the scan limit is {max_scans}"
        )
    if counts.scans > max_scans:
        raise ImageDecodeError(
            f"the JPEG has {counts.scans} scans; the limit is {max_scans} "
            "(cameras and encoders write about 10, 18 for CMYK)"
        )
    if counts.header_gap > MAX_JPEG_HEADER_GAP:
        raise ImageDecodeError(
            f"the JPEG has more than {MAX_JPEG_HEADER_GAP} bytes of fill or junk between its header segments"
        )
