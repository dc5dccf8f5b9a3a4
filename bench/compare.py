"""Model comparison over a dataset: the job's time against two plain forward passes.

Two resnet18 checkpoints (seeded random weights, saved as safetensors) over COUNT JPEG
pictures of SIDE px in a folder the script writes (crops of scikit-learn's two photos, 10
classes), 5 layers each (layer1..layer4, avgpool), pool=mean. In one process: the job's time
from POST to its finished result through the app (TestClient), and the time of reading,
decoding and preprocessing the same pictures and running both models over them in
inference mode, batch by batch as the job batches them (anchor), measured before and after
the job in the same run. Goal: ratio <= 1.15.

Memory: the process's resident set (VmRSS) is sampled while the job runs, by pictures done;
with pool=mean the job keeps running sums only, so RSS should not grow from one equal step of
pictures to the next (printed as the growth per --step pictures after the first step).

Run: .venv/bin/python bench/compare.py [--count 1000 --side 224 --step 200 --device cpu]
     (a quick end-to-end check: --count 60 --side 64 --step 20)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.dataset import write_pictures  # noqa: E402

GOAL = 1.15
LAYERS = "layer1,layer2,layer3,layer4,avgpool"
MODEL = """
[[models]]
name = "{name}"
architecture = "torchvision:resnet18"
weights = "{weights}"
input_size = [{side}, {side}]
mean = [0.485, 0.456, 0.406]
std = [0.229, 0.224, 0.225]
num_classes = 10
"""
DATASET = """
[[datasets]]
name = "pictures"
path = "{folder}"
"""


def write_models(folder: Path, side: int) -> Path:
    import torchvision
    from safetensors.torch import save_file

    text = ""
    for name, seed in (("first", 1), ("second", 2)):
        torch.manual_seed(seed)
        model = torchvision.models.resnet18(num_classes=10)
        weights = folder / f"{name}.safetensors"
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
        text += MODEL.format(name=name, weights=weights, side=side)
    models = folder / "models.toml"
    models.write_text(text + DATASET.format(folder=folder / "set"), encoding="utf-8")
    return models


def plain_passes(app: object, count: int) -> float:
    """Both models over the pictures as the job reads and batches them, nothing else."""
    from service.engine.compare.plan import plan_compare
    from service.engine.images import decode_image, preprocess

    state = app.state  # type: ignore[attr-defined]
    first, second = state.registry.get("first"), state.registry.get("second")
    dataset = state.datasets.get("pictures")
    plan = plan_compare(
        first,
        second,
        dataset,
        layers_a=None,
        layers_b=None,
        pool="mean",
        debiased=False,
        limit=None,
        seed=0,
    )
    start = time.perf_counter()
    for begin in range(0, count, plan.batch_size):
        indices = range(begin, min(begin + plan.batch_size, count))
        images = [decode_image(dataset.read(i), max_pixels=1 << 26) for i in indices]
        for model in (first, second):
            with torch.inference_mode():
                output = model.module(preprocess(images, model.spec, model.device))
            output.cpu()
    if first.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def rss_mib() -> float:
    """This process's resident set now (Linux /proc), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_job(client: object, url: str, every: int) -> tuple[dict, dict[int, float]]:
    """POST the job, poll it to the end; its result and the RSS by pictures done."""
    accepted = client.post(url)  # type: ignore[attr-defined]
    accepted.raise_for_status()
    location = accepted.headers["location"]
    rss: dict[int, float] = {}
    while True:
        body = client.get(location).json()  # type: ignore[attr-defined]
        step = body["progress"]["step"]
        rss.setdefault(step // every * every, rss_mib())
        if body["status"] == "succeeded":
            rss[step] = rss_mib()
            return client.get(f"{location}/result").json(), rss  # type: ignore[attr-defined]
        if body["status"] not in ("queued", "running"):
            raise RuntimeError(f"job ended {body['status']}: {body.get('error')}")
        time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--side", type=int, default=224)
    parser.add_argument("--step", type=int, default=200, help="pictures between RSS readings")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: the service's)")
    args = parser.parse_args()
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings

    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        write_pictures(folder / "set", args.count, args.side)
        settings = Settings(models=write_models(folder, args.side), device=args.device)
        with TestClient(create_app(settings)) as client:
            url = f"/v1/compare/datasets/pictures?models=first,second&layers_a={LAYERS}"
            url += f"&layers_b={LAYERS}&pool=mean"
            before = plain_passes(client.app, args.count)  # also warms both models up
            start = time.perf_counter()
            result, rss = run_job(client, url, args.step)
            job = time.perf_counter() - start
            after = plain_passes(client.app, args.count)
            anchor = min(before, after)
            device = str(client.app.state.registry.get("first").device)
    assert result["images"] == args.count, result["images"]
    ratio = job / anchor
    print(
        f"compare: 2 x resnet18 over {args.count} pictures at {args.side} px on {device}, "
        f"5 layers each, pool=mean: job {job:.2f} s / plain forward passes {anchor:.2f} s = "
        f"{ratio:.3f} (goal <= {GOAL}, {'meets' if ratio <= GOAL else 'MISSES'}); "
        f"CKA diagonal {[round(result['cka']['matrix'][i][i], 3) for i in range(5)]}"
    )
    print(f"anchors: before the job {before:.2f} s, after it {after:.2f} s")
    marks = sorted(k for k in rss if k >= args.step)
    print("RSS by pictures done (MiB): " + ", ".join(f"{k}: {rss[k]:.0f}" for k in marks))
    if len(marks) >= 2:
        growth = [rss[b] - rss[a] for a, b in zip(marks, marks[1:], strict=False)]
        print(
            f"RSS growth per {args.step} pictures after the first {args.step}: "
            + ", ".join(f"{g:+.1f}" for g in growth)
            + " MiB"
        )


if __name__ == "__main__":
    main()
