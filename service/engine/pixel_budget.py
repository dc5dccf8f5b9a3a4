"""A request's pictures checked from their headers, before any pixel is decoded.

Three bounds: each picture's pixels, all of a request's pictures together (up to
`max_images` of them), and each picture's aspect ratio. Reading a header costs
microseconds whatever the picture claims, so a hostile request is refused before it is
queued. Data that is not a picture passes untouched: decoding answers it with its 415.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from model_registry.errors import InvalidInput, PayloadTooLarge


@dataclass(frozen=True)
class PixelBudget:
    """The limits (`Settings.max_image_pixels`, `max_request_pixels`, `max_aspect_ratio`)."""

    per_image: int
    per_request: int
    aspect_ratio: float


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) as the header declares it; None when `data` is not a picture.

    Raises:
        PayloadTooLarge: a size past Pillow's own decompression-bomb bound.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                return image.size
    except Image.DecompressionBombError as exc:
        raise PayloadTooLarge(f"image: {exc}", field="image") from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
        return None


def check_pictures(pictures: Sequence[bytes], budget: PixelBudget, *, field: str = "image") -> None:
    """Refuse the request when a picture, or all of them together, is over `budget`.

    Raises:
        PayloadTooLarge: a picture over `per_image` pixels, or all of them over `per_request`.
        InvalidInput: a picture whose longer side is over `aspect_ratio` times its shorter.
    """
    total = 0
    for index, data in enumerate(pictures):
        try:
            size = header_size(data)
        except PayloadTooLarge as exc:
            raise PayloadTooLarge(
                f"{field}[{index}] declares too many pixels (limit {budget.per_image})",
                field=field,
                max_pixels=budget.per_image,
            ) from exc
        if size is None:
            continue
        width, height = size
        pixels = width * height
        if pixels > budget.per_image:
            raise PayloadTooLarge(
                f"{field}[{index}] is {width}x{height} = {pixels} pixels, over the limit of "
                f"{budget.per_image} (max_image_pixels)",
                field=field,
                max_pixels=budget.per_image,
            )
        ratio = max(width, height) / max(1, min(width, height))
        if ratio > budget.aspect_ratio:
            raise InvalidInput(
                f"{field}[{index}] is {width}x{height}, an aspect ratio of {ratio:g}:1, over "
                f"the limit of {budget.aspect_ratio:g}:1 (max_aspect_ratio)",
                field=field,
                max_aspect_ratio=budget.aspect_ratio,
            )
        total += pixels
        if total > budget.per_request:
            raise PayloadTooLarge(
                f"{field}: the first {index + 1} pictures hold {total} pixels together, over "
                f"the request's limit of {budget.per_request} (max_request_pixels)",
                field=field,
                max_request_pixels=budget.per_request,
            )
