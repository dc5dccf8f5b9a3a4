"""Decode uploads safely and turn them into the model's input tensor (and back)."""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from model_registry.errors import InvalidInput, PayloadTooLarge, UnsupportedMedia
from model_registry.spec import ModelSpec

ALLOWED_FORMATS = ("PNG", "JPEG", "MPO", "WEBP", "BMP", "TIFF", "GIF")


def decode_image(
    data: bytes, *, max_pixels: int, index: int = 0, field: str = "image"
) -> Image.Image:
    """Decode one upload; the pixel limit is checked from the header before any pixel is decoded.

    Raises:
        InvalidInput: empty or truncated data.
        UnsupportedMedia: not an image, or a format outside the allow-list.
        PayloadTooLarge: more pixels than `max_pixels`.
    """
    where = f"{field}[{index}]"
    if not data:
        raise InvalidInput(f"{where} is empty", field=field)
    try:
        with warnings.catch_warnings():
            # Pillow's own bomb guard warns or raises on size; our limit below decides.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise PayloadTooLarge(
            f"{where} has too many pixels (limit {max_pixels})", field=field, max_pixels=max_pixels
        ) from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise UnsupportedMedia(
            f"{where} is not a decodable image; send one of {', '.join(ALLOWED_FORMATS)}",
            field=field,
            formats=list(ALLOWED_FORMATS),
        ) from exc
    if image.format not in ALLOWED_FORMATS:
        raise UnsupportedMedia(
            f"{where} is {image.format}, which is not accepted; send one of "
            f"{', '.join(ALLOWED_FORMATS)}",
            field=field,
            formats=list(ALLOWED_FORMATS),
        )
    width, height = image.size
    if width * height > max_pixels:
        raise PayloadTooLarge(
            f"{where} is {width}x{height} = {width * height} pixels, over the limit of "
            f"{max_pixels}",
            field=field,
            max_pixels=max_pixels,
        )
    try:
        image.seek(0)  # animated formats: the first frame
        image.load()
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise InvalidInput(f"{where} could not be decoded: {exc}", field=field) from exc
    return image


def _to_8bit(image: Image.Image) -> Image.Image:
    """16-bit and float pictures scaled to 8 bits (Pillow's own conversion would clip them)."""
    array = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        scaled = array * 255.0 if array.max(initial=0.0) <= 1.0 else array
    else:
        scaled = array / 257.0 if array.max(initial=0.0) > 255 else array
    return Image.fromarray(np.clip(np.round(scaled), 0, 255).astype(np.uint8), mode="L")


def to_model_image(image: Image.Image, spec: ModelSpec) -> Image.Image:
    """Colour mode and size the model expects (bilinear, antialiased; unchanged when right)."""
    mode = "L" if spec.in_channels == 1 else "RGB"
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        image = _to_8bit(image)
    if image.mode != mode:
        image = image.convert(mode)
    height, width = spec.input_size
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BILINEAR, reducing_gap=None)
    return image


def model_pixels(images: Sequence[Image.Image], spec: ModelSpec) -> np.ndarray:
    """Images -> uint8 [B, H, W, C] at the model's size and colour mode (Pillow only, no torch).

    This half of preprocessing runs in the CPU pool; `to_batch` runs on the device thread.
    """
    arrays = [np.asarray(to_model_image(img, spec), dtype=np.uint8) for img in images]
    stacked = np.stack(arrays)
    return stacked[..., None] if stacked.ndim == 3 else stacked


def to_batch(pixels: np.ndarray, spec: ModelSpec, device: torch.device) -> torch.Tensor:
    """uint8 [B, H, W, C] -> normalized float32 batch [B, C, H, W] on `device`."""
    batch = torch.from_numpy(np.ascontiguousarray(pixels)).to(device).permute(0, 3, 1, 2)
    mean = torch.tensor(spec.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, device=device).view(1, -1, 1, 1)
    return ((batch.float() / 255.0) - mean) / std


def preprocess(
    images: Sequence[Image.Image], spec: ModelSpec, device: torch.device
) -> torch.Tensor:
    """Images -> normalized float32 batch [B, C, H, W] on `device`."""
    return to_batch(model_pixels(images, spec), spec, device)


def display_pixels(pixels: np.ndarray) -> np.ndarray:
    """uint8 [B, H, W, C] model pixels -> uint8 RGB [B, H, W, 3] for panels and overlays."""
    return np.repeat(pixels, 3, axis=3) if pixels.shape[3] == 1 else pixels


def denormalize(batch: torch.Tensor, spec: ModelSpec) -> np.ndarray:
    """Normalized batch -> uint8 RGB pictures [B, H, W, 3] for panels and overlays."""
    mean = torch.tensor(spec.mean, device=batch.device).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, device=batch.device).view(1, -1, 1, 1)
    pixels = ((batch * std + mean).clamp(0, 1) * 255.0).round().to(torch.uint8)
    pixels = pixels.expand(-1, 3, -1, -1) if pixels.shape[1] == 1 else pixels
    return pixels.permute(0, 2, 3, 1).cpu().numpy()
