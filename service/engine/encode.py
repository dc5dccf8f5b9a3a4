"""Byte encodings of results: NPY, NPZ (one array per layer) and PNG."""

from __future__ import annotations

import io
from collections.abc import Mapping

import numpy as np
from PIL import Image

from model_registry.fast_paths import png as fast_png

NPY_MEDIA_TYPE = "application/x-npy"
NPZ_MEDIA_TYPE = "application/zip"
PNG_MEDIA_TYPE = "image/png"


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """Uncompressed: float activations barely compress and speed matters more here."""
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, **{k: np.ascontiguousarray(v) for k, v in arrays.items()})
    return buffer.getvalue()


def png_bytes(pixels: np.ndarray) -> bytes:
    """uint8 [H, W] (grey), [H, W, 3] (RGB) or [H, W, 4] (RGBA) -> PNG.

    The fast path's writer (`model_registry.fast_paths.png`) by default; Pillow's encoder
    at compress_level=1 when it is switched off (`use_fast_png(False)`).
    """
    pixels = np.ascontiguousarray(pixels)
    channels = 1 if pixels.ndim == 2 else pixels.shape[-1]
    if pixels.dtype != np.uint8 or pixels.ndim not in (2, 3) or channels not in (1, 3, 4):
        raise ValueError(f"png_bytes takes uint8 [H, W(, C)], not {pixels.dtype} {pixels.shape}")
    if _fast_png:
        return fast_png.png_bytes(pixels.reshape(pixels.shape[0], -1), channels)
    pixels = pixels.reshape(pixels.shape[:2]) if channels == 1 else pixels
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


_fast_png = True


def use_fast_png(enabled: bool) -> None:
    """Choose the PNG encoder for this process (`Settings.fast_png`, set at start-up)."""
    global _fast_png
    _fast_png = enabled
