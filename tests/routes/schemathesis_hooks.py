"""Schemathesis hooks for tests/routes/test_schemathesis.py (loaded through SCHEMATHESIS_HOOKS).

They hand the fuzzer what the document says in words but JSON Schema cannot generate:

- an upload's `encoding.contentType` names picture formats: valid uploads become real
  pictures (small, seeded, in each accepted format) instead of random bytes;
- "upload it ... or pass image_id" and "at most N pictures a request" (the field
  descriptions), maximize's "channel or direction", invert's one picture, and embedding's
  minimum count (2 for PCA, 4 for t-SNE, perplexity below the count): valid cases keep
  those rules;
- what depends on the served data: a `dataset:NAME/INDEX` reference names a picture of the
  built-in `digits` set (the only dataset served here), and a channel list names channels
  every layer has (3: the smallest width, conv1's input) with ranges running forwards;
  the served model classifies 10 classes, so /predict's valid format is json (png and npy
  draw segmentation masks and detection boxes) and top_k is at most 10; embedding's labels
  are one per picture; maximize and invert run at most 8 steps (the server's step cap is a
  setting the document does not carry).

Negative cases are left as generated, and every check still judges every answer; the rules
only make valid cases reach the engine instead of stopping at a 422. The rules no hook keeps
are in schemathesis.toml, each with its reason.
"""

from __future__ import annotations

import io
import os
import re

import numpy as np
import schemathesis
from PIL import Image

FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF")
MAX_IMAGES = int(os.environ.get("LAYERSCOPE_MAX_IMAGES", "32"))
# Constants of the served data, not imported: importing the registry would load torch into
# the fuzzer's process (seconds of start-up for three numbers).
DIGITS = "digits"  # the built-in dataset (model_registry.datasets), the only one served
DIGITS_KEPT = 100  # indices below it name a picture (digits holds 1,797)
NARROWEST = 3  # conv1's input channels: every layer of the tiny resnet has at least 3
CHANNEL_FIELDS = ("channels", "inputs")
FEW_STEPS = 8  # within any LAYERSCOPE_MAX_INSIGHT_STEPS, and a fuzzed case stays cheap
CLASSES = 10  # the classes of tests/helpers.py's write_resnet_config model
_REFERENCE = re.compile(r"dataset:[^/,]+/([0-9]+)")
_RANGE = re.compile(r"([0-9]+)(?:-([0-9]+))?")


def _picture(seed: int) -> bytes:
    """A small real picture in one of the accepted formats, chosen by `seed`."""
    rng = np.random.default_rng(seed)
    size = (8 + seed % 57, 8 + (seed // 57) % 57)
    image = Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format=FORMATS[seed % len(FORMATS)])
    return buffer.getvalue()


def _count(value: object) -> int:
    if isinstance(value, list | tuple):
        return sum(_count(item) for item in value)
    if isinstance(value, bytes) or hasattr(value, "data"):  # schemathesis' Binary
        return 1
    if isinstance(value, str):
        return sum(1 for part in value.split(",") if part.strip())
    return 0


def _form(case) -> dict | None:
    body = getattr(case, "body", None)
    body = getattr(body, "body", body)  # a form with per-part media types wraps its fields
    return body if isinstance(body, dict) else None


def _pictures_named(case) -> int:
    form = _form(case) or {}
    query = case.query or {}
    return _count(form.get("image")) + _count(query.get("image")) + _count(query.get("image_id"))


def _takes_pictures(operation) -> bool:
    return any(p.name == "image_id" for p in operation.query) or "multipart/form-data" in str(
        operation.definition.raw.get("requestBody", "")
    )


def _positive(case) -> bool:
    return case.meta is not None and case.meta.generation.mode.is_positive


@schemathesis.hook
def filter_case(context, case) -> bool:
    """Valid data keeps the rules the parameter descriptions state: a request names one
    to LAYERSCOPE_MAX_IMAGES pictures in all, and maximize takes `channel` or `direction`."""
    if not _positive(case):
        return True
    if _takes_pictures(case.operation) and not 1 <= _pictures_named(case) <= MAX_IMAGES:
        return False
    path, query = case.operation.path, case.query or {}
    if path.endswith("/maximize"):  # an empty `direction` is given, and refused
        return len([name for name in ("channel", "direction") if name in query]) == 1
    if path.endswith("/invert"):
        return _pictures_named(case) == 1
    if path.endswith("/embedding"):
        count = _pictures_named(case)
        if query.get("method", "pca") == "pca":
            return count >= 2
        perplexity = query.get("perplexity")
        return count >= 4 and (perplexity is None or perplexity < count)
    return True


def _digit(match: re.Match) -> str:
    return f"{DIGITS}/{int(match.group(1)) % DIGITS_KEPT}"


def _served_references(value: object) -> object:
    """`dataset:NAME/INDEX` -> a picture of `digits` (names and indices are the catalog's)."""
    if isinstance(value, list):
        return [_served_references(item) for item in value]
    if isinstance(value, str):
        return _REFERENCE.sub(lambda m: "dataset:" + _digit(m), value)
    return value


def _channel(match: re.Match) -> str:
    start = int(match.group(1)) % NARROWEST
    if match.group(2) is None:
        return str(start)
    stop = int(match.group(2)) % NARROWEST
    return f"{min(start, stop)}-{max(start, stop)}"


def _served_channels(value: object) -> object:
    """A channel list names channels the layer has, each range running forwards."""
    if isinstance(value, str) and value.strip()[:1].isdigit():
        return _RANGE.sub(_channel, value)
    return value


def _integer(value: object) -> int | None:
    """A query integer, as generated (an int) or already written out (a string)."""
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@schemathesis.hook
def map_case(context, case):
    """Valid uploads are pictures (each uploaded part's bytes become a real picture), valid
    dataset references and channel lists name what the server has."""
    if not _positive(case):
        return case
    query = case.query or {}
    for name in ("image", "image_id"):
        if name in query:
            query[name] = _served_references(query[name])
    for name in CHANNEL_FIELDS:
        if name in query:
            query[name] = _served_channels(query[name])
    if case.operation.path.endswith(("/maximize", "/invert")):
        steps = _integer(query.get("steps", FEW_STEPS))
        if steps is not None:
            query["steps"] = 1 + (steps - 1) % FEW_STEPS
            case.query = query
    if case.operation.path.endswith("/predict"):
        if "format" in query:
            query["format"] = "json"
        top_k = _integer(query.get("top_k"))
        if top_k is not None:
            query["top_k"] = 1 + (top_k - 1) % CLASSES
    form = _form(case)
    if form is not None and form.get("labels") is not None:
        form["labels"] = [f"label{i}" for i in range(_count(form.get("image")))]
    if form is not None and "image" in form:
        value = form["image"]
        if isinstance(value, list):
            form["image"] = [_picture(len(str(part)) + i) for i, part in enumerate(value)]
        elif value is not None:
            form["image"] = _picture(len(str(value)))
    return case
