"""Dataset exemplars: speed on the whole digits set, and memory flat in the set's size.

1. Exemplars for all 128 channels of digits `relu3` over the 1,797 digits, k = 9, through
   the app (TestClient, one process) from POST to the finished result. Goal <= 10 s on the
   2-core machine; the anchor is one plain inference pass over the same decoded batches.
2. resnet18 (random weights) at SIDE px, `layer3`, all 256 channels, over COUNT JPEGs of a
   folder written here: the resident set size (current RSS, /proc/self/statm) sampled after
   each 200 pictures of the streaming engine. Goal: the least-squares slope of RSS per 200
   pictures below 10% of what keeping those 200 pictures' layer3 activations would take
   (the anchor, 200 x 256 x 14 x 14 float32 = 38 MiB at 224 px); single samples swing by
   tens of MiB with the allocator, so the slope, not first-to-last, is the figure.

Run: .venv/bin/python bench/units.py [--count 2000 --side 224]
     (a quick end-to-end check: --count 400 --side 64)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.dataset import finished, write_pictures  # noqa: E402

SPEED_GOAL_S = 10.0
SLOPE_GOAL = 0.10
STEP = 200


def digits_speed() -> None:
    from fastapi.testclient import TestClient

    from model_registry.datasets import DigitsDataset
    from service.app import create_app
    from service.engine.images import decode_image, preprocess
    from service.settings import Settings

    with TestClient(create_app(Settings(device="cpu"))) as client:
        start = time.perf_counter()
        url = "/v1/models/digits/datasets/digits/units?layer=relu3&channels=all&k=9"
        accepted = client.post(url)
        accepted.raise_for_status()
        result = finished(client, accepted.headers["location"])  # type: ignore[arg-type]
        elapsed = time.perf_counter() - start
        model = client.app.state.registry.get("digits")  # type: ignore[attr-defined]
    assert result["images"] == 1797 and len(result["units"]) == 128
    dataset = DigitsDataset()
    anchor_start = time.perf_counter()
    with torch.inference_mode():
        for first in range(0, 1797, 256):
            images = [
                decode_image(dataset.read(i), max_pixels=1 << 24)
                for i in range(first, min(first + 256, 1797))
            ]
            model.module(preprocess(images, model.spec, model.device))
    anchor = time.perf_counter() - anchor_start
    verdict = "meets" if elapsed <= SPEED_GOAL_S else "MISSES"
    print(
        f"digits relu3, 128 channels, k=9, 1797 pictures: {elapsed:.2f} s through the job "
        f"(goal <= {SPEED_GOAL_S:g} s, {verdict}); one plain pass over the same pictures "
        f"{anchor:.2f} s, ratio {elapsed / anchor:.2f}"
    )


def rss_mib() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def memory(count: int, side: int) -> None:
    import torchvision

    from model_registry.datasets import scan_folder
    from service.engine.exemplars.plan import plan_exemplars
    from service.engine.exemplars.run import exemplars
    from tests.tiny_models import loaded

    torch.manual_seed(0)
    model = loaded("resnet18", torchvision.models.resnet18(num_classes=10), (side, side), 10)
    with tempfile.TemporaryDirectory() as folder:
        write_pictures(Path(folder) / "set", count, side)
        dataset = scan_folder("set", Path(folder) / "set")
        plan = plan_exemplars(
            model, dataset, layer="layer3", channels="all", k=9, score="max", limit=None, seed=0
        )
        samples: dict[int, float] = {}

        def progress(done: int, _total: int) -> None:
            mark = done // STEP * STEP
            if mark and mark not in samples:
                samples[mark] = rss_mib()

        exemplars(model, dataset, plan, max_pixels=1 << 26, progress=progress)
    marks = sorted(samples)
    steps = ", ".join(f"{m}: {samples[m]:.0f}" for m in marks)
    slope = float(np.polyfit(marks, [samples[m] for m in marks], 1)[0]) * STEP
    channels, height, width = model.catalog.get("layer3").spatial_shape or (0, 0, 0)
    anchor = STEP * channels * height * width * 4 / 2**20
    verdict = "meets" if slope <= SLOPE_GOAL * anchor else "MISSES"
    print(
        f"resnet18 layer3 at {side} px, {count} pictures, batch {plan.batch_size}: RSS MiB by "
        f"pictures done {{{steps}}}; slope {slope:+.1f} MiB per {STEP} pictures against "
        f"{anchor:.0f} MiB to keep their activations = {slope / anchor:.3f} "
        f"(goal <= {SLOPE_GOAL:g}, {verdict})"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--side", type=int, default=224)
    args = parser.parse_args()
    torch.set_num_threads(2)
    digits_speed()
    memory(args.count, args.side)


if __name__ == "__main__":
    main()
