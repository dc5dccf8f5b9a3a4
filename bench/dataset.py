"""Dataset analysis: speed on the whole digits set, and memory that does not grow with the set.

1. The whole digits set (1,797 pictures) through the digits model on a real server, three
   layers plus t-SNE, from POST to the finished job. Goal <= 30 s on the 2-core machine.
2. Peak RSS of one process that serves resnet18 (random weights) at SIDE px and analyses a
   folder of LARGE pictures, against the same for SMALL pictures, each in a fresh
   subprocess. Pictures are crops of scikit-learn's two photos written as JPEGs into a
   temporary folder (10 classes). Goal: ratio <= 1.25 (memory does not grow with the set).

Run: .venv/bin/python bench/dataset.py [--large 2000 --small 200 --side 224]
     (small sizes for a quick end-to-end check: --large 60 --small 20 --side 64)
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ROOT, running_server  # noqa: E402

DIGITS_MODELS = """[[models]]
name = "digits"
architecture = "builtin:digits"
weights = "builtin:digits"
"""
RESNET_MODELS = """[[models]]
name = "resnet18"
architecture = "torchvision:resnet18"
input_size = [{side}, {side}]
mean = [0.485, 0.456, 0.406]
std = [0.229, 0.224, 0.225]
num_classes = 1000

[[datasets]]
name = "pictures"
path = "{folder}"
"""
SPEED_GOAL_S = 30.0
MEMORY_GOAL = 1.25
CLASSES = 10


def finished(client: httpx.Client, location: str, limit_s: float = 3600.0) -> dict:
    """Poll a job until it ends; its result, or an error naming the job's failure."""
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        body = client.get(location).json()
        if body["status"] == "succeeded":
            return client.get(f"{location}/result").json()
        if body["status"] not in ("queued", "running"):
            raise RuntimeError(f"job ended {body['status']}: {body.get('error')}")
        time.sleep(0.1)
    raise RuntimeError(f"job {location} did not finish in {limit_s:g} s")


def digits_speed() -> float:
    with tempfile.TemporaryDirectory() as folder:
        models = Path(folder) / "models.toml"
        models.write_text(DIGITS_MODELS, encoding="utf-8")
        with (
            running_server({"LAYERSCOPE_MODELS": str(models)}) as base,
            httpx.Client(base_url=base, timeout=60) as client,
        ):
            start = time.perf_counter()
            url = "/v1/models/digits/datasets/digits/analysis?layers=relu1,relu2,relu3&method=tsne"
            accepted = client.post(url)
            accepted.raise_for_status()
            result = finished(client, accepted.headers["location"])
            elapsed = time.perf_counter() - start
    assert result["images"] == 1797, result["images"]
    print(
        f"digits: 1797 pictures, 3 layers + t-SNE in {elapsed:.1f} s "
        f"(goal <= {SPEED_GOAL_S:g} s, {'meets' if elapsed <= SPEED_GOAL_S else 'MISSES'}); "
        f"accuracy {result['accuracy']:.4f}; t-SNE 5-NN accuracy {_knn(result['embedding']):.3f}"
    )
    return elapsed


def _knn(embedding: dict) -> float:
    """5-NN accuracy (5-fold) of the returned 2-D points, as the README quotes it."""
    from sklearn.model_selection import cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    points, labels = embedding["points"], embedding["labels"]
    return float(cross_val_score(KNeighborsClassifier(n_neighbors=5), points, labels, cv=5).mean())


def write_pictures(folder: Path, count: int, side: int) -> None:
    """`count` JPEG crops of the two sample photos, spread over CLASSES class folders."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    photos = [Image.fromarray(img) for img in load_sample_images().images]
    for index in range(count):
        photo = photos[index % 2]
        left, top = (17 * index) % 220, (11 * index) % 20
        crop = photo.crop((left, top, left + 400, top + 400)).resize((side, side))
        target = folder / f"class{index % CLASSES}"
        target.mkdir(parents=True, exist_ok=True)
        crop.save(target / f"{index:05d}.jpg", quality=90)


def child(folder: Path, side: int) -> None:
    """In a fresh process: serve resnet18 with the folder as a dataset, analyse it, print
    peak RSS before and after the analysis (MiB) as JSON."""
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings

    models = folder / "models.toml"
    models.write_text(RESNET_MODELS.format(side=side, folder=folder / "set"), encoding="utf-8")
    settings = Settings(models=models, device="cpu")
    with TestClient(create_app(settings)) as client:
        loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        url = "/v1/models/resnet18/datasets/pictures/analysis"
        accepted = client.post(f"{url}?layers=layer1,layer2,layer3,layer4&method=pca")
        accepted.raise_for_status()
        result = finished(client, accepted.headers["location"])  # type: ignore[arg-type]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"images": result["images"], "loaded_mib": loaded, "peak_mib": peak}))


def peak_rss(count: int, side: int) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        write_pictures(Path(folder) / "set", count, side)
        command = [sys.executable, __file__, "--child", folder, "--side", str(side)]
        output = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True)
    figures = json.loads(output.stdout.strip().splitlines()[-1])
    assert figures["images"] == count, figures
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--large", type=int, default=2000)
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument("--side", type=int, default=224)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, args.side)
        return
    digits_speed()
    small, large = peak_rss(args.small, args.side), peak_rss(args.large, args.side)
    ratio = large["peak_mib"] / small["peak_mib"]
    verdict = "meets" if ratio <= MEMORY_GOAL else "MISSES"
    print(
        f"resnet18 at {args.side} px: peak RSS {large['peak_mib']:.0f} MiB for {args.large} "
        f"pictures / {small['peak_mib']:.0f} MiB for {args.small} = {ratio:.3f} "
        f"(goal <= {MEMORY_GOAL}, {verdict}); after loading: {small['loaded_mib']:.0f} MiB"
    )


if __name__ == "__main__":
    main()
