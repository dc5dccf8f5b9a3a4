"""Repeated views of the same image and layer against the first view (activation cache).

The portal uploads once (POST /v1/images) and then asks for many views of one layer:
another channel selection, reduction or colormap. The first view of each image pays for
decoding and the forward pass; repeated views reuse the cached layer. Goal: >= 5x faster.
Both answer formats are timed: PNG views (the portal's) and npy views (scripts').

The views are timed through Python's own `http.client` on one keep-alive connection, the
lightest client at hand, as the portal's browser is: httpx spends about 0.5-1 ms of its
own on each call, which is a fifth of a repeated view and tells nothing about the server.
`--client httpx` times them through httpx instead.

Run: .venv/bin/python bench/cache.py [--images 24] [--client http.client|httpx]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import KeepAliveClient, distinct_pictures, running_server  # noqa: E402

VIEWS = [
    {"channels": "first:16"},
    {"channels": "top:16", "colormap": "magma"},
    {"channels": "0-31", "scale": "shared"},
    {"channels": "all", "reduce": "pca"},
    {"channels": "all", "reduce": "mean", "colormap": "inferno"},
]


def poster(base: str, kind: str) -> Callable[[str], bytes]:
    """POST with no body to a path (query included) on one keep-alive connection; the answer."""
    if kind == "httpx":
        client = httpx.Client(base_url=base, timeout=60)

        def post_httpx(path: str) -> bytes:
            answer = client.post(path)
            answer.raise_for_status()
            return answer.content

        return post_httpx
    client = KeepAliveClient(base)

    def post(path: str) -> bytes:
        return client.request("POST", path)

    return post


def time_views(
    client: httpx.Client, post: Callable[[str], bytes], uploads: list[bytes], layer: str, fmt: str
) -> tuple[list[float], list[float]]:
    """Per image: upload once, then every view in turn; (first views, repeated views) seconds."""
    first, repeated = [], []
    for data in uploads:
        image_id = client.post("/v1/images", files={"image": ("p.png", data, "image/png")}).json()[
            "image_id"
        ]
        for index, view in enumerate(VIEWS):
            query = urllib.parse.urlencode(
                {"image_id": image_id, "layers": layer, "format": fmt, **view}
            )
            started = time.perf_counter()
            post(f"/v1/models/resnet18/feature-maps?{query}")
            elapsed = time.perf_counter() - started
            (first if index == 0 else repeated).append(elapsed)
    return first, repeated


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--layer", default="layer2")
    parser.add_argument("--client", choices=("http.client", "httpx"), default="http.client")
    args = parser.parse_args()
    with (
        running_server({"LAYERSCOPE_DEVICE": "cpu"}) as base,
        httpx.Client(base_url=base, timeout=60) as client,
    ):
        # Distinct images per format, so every first view is a real cache miss.
        uploads = distinct_pictures(2 * args.images)
        post = poster(base, args.client)
        results = {
            fmt: time_views(client, post, uploads[i::2], args.layer, fmt)
            for i, fmt in enumerate(("png", "npy"))
        }
    print(
        f"resnet18 {args.layer}, {args.images} images x {len(VIEWS)} views per format, "
        f"views timed through {args.client}"
    )
    for fmt, (first, repeated) in results.items():
        cold, warm = statistics.median(first), statistics.median(repeated)
        print(
            f"{fmt}: first view {cold * 1000:.1f} ms (decode + forward + answer), repeated views "
            f"{warm * 1000:.1f} ms: {cold / warm:.1f}x faster (goal >= 5x, "
            f"{'meets' if cold / warm >= 5 else 'misses'})"
        )


if __name__ == "__main__":
    main()
