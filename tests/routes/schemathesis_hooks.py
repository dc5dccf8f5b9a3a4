"""Schemathesis hooks for tests/routes/test_schemathesis.py (loaded through SCHEMATHESIS_HOOKS).

They hand the fuzzer what the document says in words but JSON Schema cannot generate:

- an upload's `encoding.contentType` names picture formats: valid uploads become real
  pictures (small, seeded, in each accepted format) instead of random bytes;
- "upload it ... or pass image_id" and "at most N pictures a request" (the field
  descriptions), and maximize's "channel or direction": valid cases keep those rules.

Negative cases are left as generated, and every check still judges every answer; the rules
only make valid cases reach the engine instead of stopping at a 422.
"""

from __future__ import annotations

import io
import os

import numpy as np
import schemathesis
from PIL import Image

FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF")
MAX_IMAGES = int(os.environ.get("LAYERSCOPE_MAX_IMAGES", "32"))


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
    if case.operation.path.endswith("/maximize"):
        query = case.query or {}
        given = [name for name in ("channel", "direction") if query.get(name) not in (None, "")]
        return len(given) == 1
    return True


@schemathesis.hook
def map_case(context, case):
    """Valid uploads are pictures: each uploaded part's bytes become a real picture."""
    form = _form(case)
    if _positive(case) and form is not None and "image" in form:
        value = form["image"]
        if isinstance(value, list):
            form["image"] = [_picture(len(str(part)) + i) for i, part in enumerate(value)]
        elif value is not None:
            form["image"] = _picture(len(str(value)))
    return case
