"""Where a request's time goes, from the server's own stage timers.

    python bench/breakdown.py [--calls 40]

A real `layerscope serve` (resnet18, seeded random weights) answers three kinds of call,
each `--calls` times, through Python's `http.client` on one keep-alive connection:

1. `layer3` npy of an uploaded PNG, a different picture every call (bench/feature_maps.py's
   case): decoding, the forward pass, the npy answer;
2. repeated PNG views of one uploaded picture (bench/cache.py's views, activation cache
   warm): selection, reduction, rendering and PNG encoding in one CPU-pool call;
3. Grad-CAM of `layer4`, npy, of an uploaded JPEG.

Per call it prints the client's end-to-end time and the mean of every stage the server
timed in that call (`layerscope_stage_seconds` on /metrics: the device thread's work and
the CPU pool's, each named after its function). What the stages do not cover is the
rest: uvicorn, FastAPI's routing, dependencies and checks, the hand-overs between the
event loop and the worker threads, and the client. Means, not medians, so the parts add up.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.cache import VIEWS  # noqa: E402
from bench.common import KeepAliveClient, distinct_pictures, running_server  # noqa: E402

STAGE = re.compile(r'^layerscope_stage_seconds_(sum|count)\{stage="([^"]+)"\} (\S+)$', re.M)


def stages(client: KeepAliveClient) -> Counter[str]:
    """Seconds the server has spent so far in each stage it times."""
    text = client.request("GET", "/metrics").decode()
    seconds: Counter[str] = Counter()
    for kind, stage, value in STAGE.findall(text):
        if kind == "sum":
            seconds[stage] += float(value)
    return seconds


def measure(
    client: KeepAliveClient, calls: list[Callable[[], object]]
) -> tuple[float, dict[str, float]]:
    """(mean seconds per call end to end, stage -> mean seconds per call) over `calls`."""
    seconds_before = stages(client)
    total = 0.0
    for call in calls:
        started = time.perf_counter()
        call()
        total += time.perf_counter() - started
    seconds_after = stages(client)
    spent = {s: (seconds_after[s] - seconds_before[s]) / len(calls) for s in seconds_after}
    return total / len(calls), {s: t for s, t in spent.items() if t > 0}


def show(label: str, total: float, stages: dict[str, float]) -> None:
    covered = sum(stages.values())
    parts = ", ".join(f"{name} {t * 1000:.2f}" for name, t in sorted(stages.items()))
    print(
        f"{label:36s} {total * 1000:6.2f} ms = {parts}, rest {(total - covered) * 1000:.2f} "
        f"({(total - covered) / total:.0%})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=40, help="calls per kind (and per view)")
    args = parser.parse_args()
    pictures = distinct_pictures(args.calls + 2)
    with running_server({"LAYERSCOPE_DEVICE": "cpu"}) as base:
        client = KeepAliveClient(base)
        model = "/v1/models/resnet18"
        for picture in pictures[:2]:  # warm-up: first calls pay for lazy set-up
            client.request(
                "POST", f"{model}/feature-maps?layers=layer3&format=npy", ("image/png", picture)
            )

        def layer3(picture: bytes) -> Callable[[], object]:
            path = f"{model}/feature-maps?layers=layer3&channels=all&format=npy"
            return lambda: client.request("POST", path, ("image/png", picture))

        print(f"resnet18, {args.calls} calls per row; mean ms per call; stages timed by the server")
        show(
            "layer3 npy, new picture each call", *measure(client, [layer3(p) for p in pictures[2:]])
        )

        stored = client.request("POST", "/v1/images", ("image/png", pictures[0]))
        image_id = json.loads(stored)["image_id"]
        for view in VIEWS[1:]:  # VIEWS[0] is bench/cache.py's first view
            query = urllib.parse.urlencode(
                {"image_id": image_id, "layers": "layer2", "format": "png", **view}
            )
            path = f"{model}/feature-maps?{query}"
            client.request("POST", path)  # the first view fills the cache
            label = "repeated PNG view " + " ".join(view.values())
            show(label, *measure(client, [lambda p=path: client.request("POST", p)] * args.calls))

        cam = f"{model}/cam?method=gradcam&layer=layer4&format=npy"
        jpeg = jpeg_of(pictures[1])
        client.request("POST", cam, ("image/jpeg", jpeg))
        calls = [lambda: client.request("POST", cam, ("image/jpeg", jpeg))] * args.calls
        show("Grad-CAM layer4 npy", *measure(client, calls))
    print(
        "rest: uvicorn, FastAPI routing, dependencies and checks, hand-overs between threads, "
        "and the client; medians of the same calls move by 10-20% between runs"
    )


def jpeg_of(png: bytes) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.open(io.BytesIO(png)).convert("RGB").save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


if __name__ == "__main__":
    main()
