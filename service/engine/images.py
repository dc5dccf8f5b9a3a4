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
from service.engine.geometry import Geometry, crop_plan, fit_geometry

ALLOWED_FORMATS = ("PNG", "JPEG", "MPO", "WEBP", "BMP", "TIFF", "GIF")


def decode_image(
    data: bytes, *, max_pixels: int, index: int = 0, field: str = "image"
) -> Image.Image:
    """Decode one upload; the pixel limit is checked from the header before any pixel is decoded.

    Raises:
        InvalidInput: empty data.
        UnsupportedMedia: not an image, a format outside the allow-list, or data that does
            not decode (truncated or corrupt).
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
        # A header that promises a picture the data does not hold (truncated, corrupt) is
        # as undecodable as no picture at all: 415, as for any other unreadable upload.
        raise UnsupportedMedia(
            f"{where} could not be decoded (truncated or corrupt): {exc}",
            field=field,
            formats=list(ALLOWED_FORMATS),
        ) from exc
    return image


def in_mode(image: Image.Image, mode: str) -> Image.Image:
    """`image` in Pillow `mode` ('L' or 'RGB'); 16-bit and float pictures are scaled first."""
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        image = _to_8bit(image)
    return image if image.mode == mode else image.convert(mode)


def _to_8bit(image: Image.Image) -> Image.Image:
    """16-bit and float pictures scaled to 8 bits (Pillow's own conversion would clip them)."""
    array = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        scaled = array * 255.0 if array.max(initial=0.0) <= 1.0 else array
    else:
        scaled = array / 257.0 if array.max(initial=0.0) > 255 else array
    return Image.fromarray(np.clip(np.round(scaled), 0, 255).astype(np.uint8), mode="L")


# A crop model's whole-picture resize is made while the copy is at most this many pixels
# (12 MB as RGB): every ordinary picture, pixel for pixel as torchvision. Past it, only the
# crop's region is resized (see `to_model_image`), so no aspect ratio can blow it up.
WHOLE_RESIZE_PIXELS = 4_000_000

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


def upload_geometries(uploads: Sequence[bytes], spec: ModelSpec) -> list[Geometry]:
    """`fit_geometry` of uploads already decoded once (only their headers are read again)."""
    geometries = []
    for data in uploads:
        with Image.open(io.BytesIO(data)) as image:
            geometries.append(fit_geometry((image.height, image.width), spec))
    return geometries


def to_model_image(
    image: Image.Image, spec: ModelSpec, *, whole_resize_pixels: int = WHOLE_RESIZE_PIXELS
) -> tuple[Image.Image, Geometry]:
    """Colour mode and size the model expects, and what was done to get there.

    The one place that does geometry: `spec.resize` decides between squashing the picture to
    `input_size`, centre-cropping it after scaling (crop_pct, as torchvision and timm
    evaluate), or letterboxing it (padding with the mean colour). One antialiased resample
    with the weights' filter (`spec.interpolation`); the image is returned unchanged when it
    is already right.

    Every picture allocated here is bounded: squash and letterbox resize to at most
    `input_size`; crop resizes the whole picture (pixel for pixel as torchvision) only while
    that copy has at most `whole_resize_pixels`, and otherwise resizes just the crop's source
    region (equal to the whole path up to the 8-bit rounding between Pillow's two passes).
    """
    mode = "L" if spec.in_channels == 1 else "RGB"
    image = in_mode(image, mode)
    height, width = spec.input_size
    geometry = fit_geometry((image.height, image.width), spec)
    box = geometry.box
    if image.size == (width, height) and box == (0.0, 0.0, float(width), float(height)):
        return image, geometry
    if spec.resize == "squash":
        resample = _RESAMPLE[spec.interpolation]
        return image.resize((width, height), resample, reducing_gap=None), geometry
    if spec.resize == "crop":
        resized_w, resized_h, left, top = crop_plan(spec, image.width, image.height)
        resample = _RESAMPLE[spec.interpolation]
        if resized_w * resized_h > whole_resize_pixels:
            # Only what the crop keeps is resized: the same filter over the same source
            # coordinates, at the crop's size whatever the aspect ratio.
            return image.resize((width, height), resample, box=box, reducing_gap=None), geometry
        if (resized_w, resized_h) != image.size:
            image = image.resize((resized_w, resized_h), resample, reducing_gap=None)
        return image.crop((left, top, left + width, top + height)), geometry
    scale = width / (box[2] - box[0])
    inner = (
        max(1, min(width, round(image.width * scale))),
        max(1, min(height, round(image.height * scale))),
    )
    fill = tuple(round(v * 255) for v in spec.mean)
    canvas = Image.new(mode, (width, height), fill[0] if mode == "L" else fill)
    offset = ((width - inner[0]) // 2, (height - inner[1]) // 2)
    canvas.paste(image.resize(inner, _RESAMPLE[spec.interpolation], reducing_gap=None), offset)
    return canvas, geometry


def model_pixels(images: Sequence[Image.Image], spec: ModelSpec) -> np.ndarray:
    """Images -> uint8 [B, H, W, C] at the model's size and colour mode (Pillow only, no torch).

    This half of preprocessing runs in the CPU pool; `to_batch` runs on the device thread.
    """
    arrays = [np.asarray(to_model_image(img, spec)[0], dtype=np.uint8) for img in images]
    stacked = np.stack(arrays)
    return stacked[..., None] if stacked.ndim == 3 else stacked


def to_batch(pixels: np.ndarray, spec: ModelSpec, device: torch.device) -> torch.Tensor:
    """uint8 [B, H, W, C] -> normalized float32 batch [B, C, H, W] on `device`, contiguous.

    Contiguous, not the channels-last strides the permute leaves: those carry through
    every convolution, and resnet50 on CPU cores runs slower on them.
    """
    array = np.ascontiguousarray(pixels.transpose(0, 3, 1, 2))
    batch = torch.from_numpy(array).to(device=device, dtype=torch.float32)
    # (x / 255 - mean) / std as one scale and one shift, in place: two passes, no temporaries.
    scale = torch.tensor([1.0 / (255.0 * s) for s in spec.std], device=device)
    shift = torch.tensor([-m / s for m, s in zip(spec.mean, spec.std, strict=True)], device=device)
    return batch.mul_(scale.view(1, -1, 1, 1)).add_(shift.view(1, -1, 1, 1))


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
