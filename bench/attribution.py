"""End-to-end HTTP latency of layerscope's CAMs against pytorch-grad-cam and Captum in-process.

    python bench/attribution.py [--rounds 5] [--block 5] [--warmup 2] [--scorecam-rounds 1]

A real uvicorn server (`layerscope serve`) on 127.0.0.1 serves torchvision's resnet50 with
seeded random weights (the registry's seed). The bench process builds the same network
and runs the anchors in-process on a ready input tensor, as in a notebook: parameters
trainable (a user's model), hooks registered once, only the call timed. The server gets
the same picture as a JPEG of the model's input size (so no resize), and its time includes
HTTP, decoding, preprocessing, the CAM and the npy encoding. layerscope and
pytorch-grad-cam explain the top-1 class, which they find in the same forward pass;
Captum needs the class up front, so it is timed twice: given the class (the goal's
anchor), and with the forward pass that finds it. "forward pass only" is the floor: one
inference-mode forward pass of the same network in-process.

Measurements are interleaved in blocks (a few calls of the server, then of pytorch-grad-cam,
then of Captum, ...; see `interleaved`) so background load hits all of them alike; the best
and the median time per call are reported. Ratios below 1 mean layerscope over HTTP is
faster than the library in-process.
Goals: Grad-CAM / pytorch-grad-cam <= 0.40, Grad-CAM / Captum LayerGradCam <= 1.0.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import torch
import torchvision

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    free_port,
    interleaved,
    pearson,
    photo_jpeg,
    verdict,
)
from model_registry.spec import ModelSpec  # noqa: E402
from service.engine.images import preprocess  # noqa: E402

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
SEED = 0  # model_registry.loading._RANDOM_INIT_SEED: the server's resnet50 has these weights


def start_server(size: int, threads: int, folder: Path) -> tuple[subprocess.Popen, str]:
    models = folder / "models.toml"
    models.write_text(
        "[[models]]\n"
        'name = "resnet50"\n'
        'architecture = "torchvision:resnet50"\n'
        f"input_size = [{size}, {size}]\n"
        f"mean = {list(MEAN)}\n"
        f"std = {list(STD)}\n"
        "num_classes = 1000\n",
        encoding="utf-8",
    )
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "LAYERSCOPE_MODELS": str(models),
        "LAYERSCOPE_DEVICE": "cpu",
        "LAYERSCOPE_TORCH_THREADS": str(threads),
        "LAYERSCOPE_LOG_LEVEL": "warning",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"server exited with {server.returncode}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return server, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    server.terminate()
    raise SystemExit("server not ready after 300 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds for Grad-CAM")
    parser.add_argument("--block", type=int, default=5, help="timed calls per side and round")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls before each block")
    parser.add_argument(
        "--scorecam-rounds", type=int, default=1, help="ScoreCAM rounds, 1 call per side (0: skip)"
    )
    parser.add_argument("--size", type=int, default=224, help="input size of the model")
    parser.add_argument(
        "--threads", type=int, default=torch.get_num_threads(), help="torch threads, both sides"
    )
    args = parser.parse_args()

    from captum.attr import LayerAttribution, LayerGradCam
    from pytorch_grad_cam import GradCAM, ScoreCAM

    torch.set_num_threads(args.threads)
    jpeg, image = photo_jpeg(args.size)
    spec = ModelSpec(
        "resnet50", "torchvision:resnet50", None, (args.size, args.size), MEAN, STD, 1000
    )
    x = preprocess([image], spec, torch.device("cpu"))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = torchvision.models.resnet50(weights=None).eval()
    with torch.no_grad():
        top1 = int(model(x).argmax())

    # One anchor object at a time: each registers its own hooks on layer4.
    grad_cam = GradCAM(model=model, target_layers=[model.layer4])
    layer_grad_cam = LayerGradCam(model, model.layer4)

    def captum(target: int | None = top1) -> torch.Tensor:
        """Captum needs a target: given (`top1`), or found by a forward pass first (None)."""
        if target is None:
            with torch.no_grad():
                target = int(model(x).argmax())
        attribution = layer_grad_cam.attribute(x, target=target, relu_attributions=True)
        return LayerAttribution.interpolate(attribution, (args.size, args.size), "bilinear")

    def forward_only() -> torch.Tensor:
        with torch.inference_mode():
            return model(x)

    with tempfile.TemporaryDirectory() as folder:
        server, url = start_server(args.size, args.threads, Path(folder))
        try:
            client = httpx.Client(base_url=url, timeout=3600)

            def http(method: str) -> Callable[[], np.ndarray]:
                def call() -> np.ndarray:
                    response = client.post(
                        f"/v1/models/resnet50/cam?method={method}&layer=layer4&format=npy",
                        files={"image": ("photo.jpg", jpeg, "image/jpeg")},
                    )
                    response.raise_for_status()
                    return np.load(io.BytesIO(response.content))

                return call

            ours = http("gradcam")()
            reference = grad_cam(input_tensor=x, targets=None)
            captum_map = captum().detach().numpy()
            print(
                f"agreement: r(layerscope, pytorch-grad-cam) = {pearson(ours, reference):.6f}, "
                f"r(layerscope, captum) = {pearson(ours, captum_map):.6f}"
            )
            runs = {
                "layerscope HTTP gradcam": http("gradcam"),
                "pytorch-grad-cam GradCAM": lambda: grad_cam(input_tensor=x, targets=None),
                "captum LayerGradCam": captum,
                "captum LayerGradCam, top-1": lambda: captum(None),
                "forward pass only (floor)": forward_only,
            }
            for run in runs.values():  # warm-up
                run()
            gradcam = interleaved(runs, args.rounds, args.block, args.warmup)
            grad_cam.activations_and_grads.release()
            score: dict[str, float] = {}
            if args.scorecam_rounds:
                score_cam = ScoreCAM(model=model, target_layers=[model.layer4])
                ours_score = http("scorecam")()
                r_score = pearson(ours_score, score_cam(input_tensor=x, targets=None))
                print(
                    f"agreement: r(layerscope scorecam, pytorch-grad-cam ScoreCAM) = {r_score:.6f}"
                )
                score_runs = {
                    "layerscope HTTP scorecam": http("scorecam"),
                    "pytorch-grad-cam ScoreCAM": lambda: score_cam(input_tensor=x, targets=None),
                }
                score = interleaved(score_runs, args.scorecam_rounds, 1, 0)
                score_cam.activations_and_grads.release()
        finally:
            server.terminate()
            server.wait(timeout=30)

    print(
        f"\nresnet50 (seeded random weights), layer4, {args.size}x{args.size}, 1 image, "
        f"torch {torch.__version__}, {args.threads} threads, load average {os.getloadavg()[0]:.2f}"
    )
    print(f"per call: best / median; Grad-CAM {args.rounds} rounds x {args.block} calls per side")
    for name, timing in {**gradcam, **score}.items():
        print(f"  {name:30s} {timing.best * 1000:10.1f} ms {timing.median * 1000:10.1f} ms")
    ours = gradcam["layerscope HTTP gradcam"]
    rows = [
        ("Grad-CAM / pytorch-grad-cam GradCAM", ours, gradcam["pytorch-grad-cam GradCAM"], 0.40),
        ("Grad-CAM / Captum LayerGradCam", ours, gradcam["captum LayerGradCam"], 1.0),
        ("Grad-CAM / Captum, top-1 found first", ours, gradcam["captum LayerGradCam, top-1"], None),
        (
            "Grad-CAM / one forward pass in-process",
            ours,
            gradcam["forward pass only (floor)"],
            None,
        ),
    ]
    if score:
        rows.append(
            (
                "ScoreCAM / pytorch-grad-cam ScoreCAM",
                score["layerscope HTTP scorecam"],
                score["pytorch-grad-cam ScoreCAM"],
                None,
            )
        )
    print("ratios, layerscope over HTTP / library in-process (best; median):")
    for label, mine, anchor, goal in rows:
        best, median = mine.best / anchor.best, mine.median / anchor.median
        print(f"  {label:38s} {best:6.3f}; {median:6.3f}  {verdict(best, goal)}")


if __name__ == "__main__":
    main()
