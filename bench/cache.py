"""Repeated views of the same image and layer against the first view (activation cache).

The portal uploads once (POST /v1/images) and then asks for many views of one layer:
another channel selection, reduction or colormap. The first view of each image pays for
decoding and the forward pass; repeated views reuse the cached layer. Goal: >= 5x faster.
Both answer formats are timed: PNG views (the portal's) and npy views (scripts').

Run: .venv/bin/python bench/cache.py [--images 12]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import distinct_pictures, running_server  # noqa: E402

VIEWS = [
    {"channels": "first:16"},
    {"channels": "top:16", "colormap": "magma"},
    {"channels": "0-31", "scale": "shared"},
    {"channels": "all", "reduce": "pca"},
    {"channels": "all", "reduce": "mean", "colormap": "inferno"},
]


def time_views(
    client: httpx.Client, uploads: list[bytes], layer: str, fmt: str
) -> tuple[list[float], list[float]]:
    """Per image: upload once, then every view in turn; (first views, repeated views) seconds."""
    first, repeated = [], []
    url = "/v1/models/resnet18/feature-maps"
    for data in uploads:
        image_id = client.post("/v1/images", files={"image": ("p.png", data, "image/png")}).json()[
            "image_id"
        ]
        for index, view in enumerate(VIEWS):
            params = {"image_id": image_id, "layers": layer, "format": fmt, **view}
            started = time.perf_counter()
            answer = client.post(url, params=params)
            elapsed = time.perf_counter() - started
            answer.raise_for_status()
            (first if index == 0 else repeated).append(elapsed)
    return first, repeated


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--layer", default="layer2")
    args = parser.parse_args()
    with (
        running_server({"LAYERSCOPE_DEVICE": "cpu"}) as base,
        httpx.Client(base_url=base, timeout=60) as client,
    ):
        # Distinct images per format, so every first view is a real cache miss.
        uploads = distinct_pictures(2 * args.images)
        results = {
            fmt: time_views(client, uploads[i::2], args.layer, fmt)
            for i, fmt in enumerate(("png", "npy"))
        }
    print(f"resnet18 {args.layer}, {args.images} images x {len(VIEWS)} views per format")
    for fmt, (first, repeated) in results.items():
        cold, warm = statistics.median(first), statistics.median(repeated)
        print(
            f"{fmt}: first view {cold * 1000:.1f} ms (decode + forward + answer), repeated views "
            f"{warm * 1000:.1f} ms: {cold / warm:.1f}x faster (goal >= 5x, "
            f"{'meets' if cold / warm >= 5 else 'misses'})"
        )


if __name__ == "__main__":
    main()
