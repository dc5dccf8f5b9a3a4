"""The PNG writer: rows with PNG's "Up" filter, deflated by ISA-L (python-isal) at level 1.

Encoding is most of a cached view's time, and almost all of it is deflate and row
filtering. Every row with the "Up" filter (a numpy subtraction) deflated by ISA-L is
several times faster than Pillow's encoder (zlib level 1, adaptive filters), for slightly
more bytes (`bench/png.py` times both). No library writes PNG with ISA-L, so the three
chunks are written here; any PNG decoder reads them (`tests/engine/test_encode.py`
decodes them with Pillow). `service.engine.encode.png_bytes` calls it unless
`LAYERSCOPE_FAST_PNG=false`, which selects Pillow's encoder.
"""

from __future__ import annotations

import struct
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from isal import isal_zlib


def png_bytes(rows: np.ndarray, channels: int) -> bytes:
    """uint8 rows [H, W * C] of a grey (C=1), RGB (3) or RGBA (4) picture -> PNG.

    Pictures of `_SPLIT_BYTES` or more are filtered and deflated in two halves at once (see
    `_idat`).
    """
    height, width = rows.shape[0], rows.shape[1] // channels
    header = struct.pack(">IIBBBBB", width, height, 8, _COLOUR_TYPES[channels], 0, 0, 0)
    # One join at the end: the deflated pieces are copied once, not once per concatenation.
    return b"".join(
        (
            _PNG_SIGNATURE,
            *_chunk(b"IHDR", header),
            *_chunk(b"IDAT", *_idat(rows)),
            *_chunk(b"IEND"),
        )
    )


def _idat(rows: np.ndarray) -> list[bytes]:
    """The zlib stream of the Up-filtered rows [H, W * C], in pieces.

    A big picture is cut into two bands of rows, each filtered and deflated on its own (the
    first ends on a byte-aligned sync flush, so the raw streams simply follow each other, as
    pigz does), the lower band on a helper thread: on two cores that shortens a big panel's
    deflate. The helper runs numpy and ISA-L only, never torch. When
    it is busy (another request is encoding), the caller takes its band back (`cancel`
    succeeds on a band not yet started) and deflates it itself, so nothing ever waits in line.
    """
    if rows.nbytes < _SPLIT_BYTES or rows.shape[0] < 2:
        band, checksum, _ = _deflated_band(rows, None, last=True)
        return [_ZLIB_HEADER, *band, struct.pack(">I", checksum)]
    middle = rows.shape[0] // 2
    lower = _HELPER.submit(_deflated_band, rows[middle:], rows[middle - 1], last=True)
    upper = _deflated_band(rows[:middle], None, last=False)
    if lower.cancel():
        second = _deflated_band(rows[middle:], rows[middle - 1], last=True)
    else:
        second = lower.result()
    checksum = _adler32_combine(upper[1], second[1], second[2])
    return [_ZLIB_HEADER, *upper[0], *second[0], struct.pack(">I", checksum)]


def _deflated_band(
    rows: np.ndarray, above: np.ndarray | None, *, last: bool
) -> tuple[list[bytes], int, int]:
    """(raw deflate in pieces, Adler-32, length) of a band of rows with PNG's Up filter;
    `above` is the row before the band (none for the picture's first row, which Up leaves as
    it is)."""
    filtered = np.empty((rows.shape[0], rows.shape[1] + 1), np.uint8)
    filtered[:, 0] = _UP_FILTER
    if above is None:
        filtered[0, 1:] = rows[0]
    else:
        np.subtract(rows[0], above, out=filtered[0, 1:])
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])  # wraps modulo 256, as PNG wants
    data = memoryview(filtered).cast("B")
    deflate = isal_zlib.compressobj(1, isal_zlib.DEFLATED, -15)  # raw: no header, no checksum
    flush = isal_zlib.Z_FINISH if last else isal_zlib.Z_SYNC_FLUSH
    return [deflate.compress(data), deflate.flush(flush)], isal_zlib.adler32(data), len(data)


def _adler32_combine(first: int, second: int, second_length: int) -> int:
    """Adler-32 of two pieces joined, from each piece's own (zlib's adler32_combine)."""
    modulus = 65521
    remainder = second_length % modulus
    low = ((first & 0xFFFF) + (second & 0xFFFF) + modulus - 1) % modulus
    high = (first >> 16) + (second >> 16) + remainder * (first & 0xFFFF) + modulus - remainder
    return ((high % modulus) << 16) | low


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_ZLIB_HEADER = b"\x78\x01"  # deflate, 32 KB window, "fastest" level hint; 0x7801 % 31 == 0
_UP_FILTER = 2
_COLOUR_TYPES = {1: 0, 3: 2, 4: 6}  # grey, RGB, RGBA
_SPLIT_BYTES = 256 * 1024  # below this, a hand-over to the helper costs about what it saves
_HELPER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="layerscope-deflate")


def _chunk(kind: bytes, *data: bytes) -> list[bytes]:
    """A PNG chunk as pieces: length, type, the data's pieces, CRC-32 (ISA-L's: SIMD,
    faster than zlib's) of type and data."""
    checksum = isal_zlib.crc32(kind)
    for piece in data:
        checksum = isal_zlib.crc32(piece, checksum)
    return [struct.pack(">I", sum(map(len, data))), kind, *data, struct.pack(">I", checksum)]
