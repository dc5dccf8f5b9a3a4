"""layerscope's perturbation and new CAM methods over HTTP against their libraries in-process.

    python bench/methods.py [--quick] [--rounds 2] [--threads N] [--methods lrp,fullgrad]

As `bench/attribution.py`: a real server (`layerscope serve`) on 127.0.0.1 serves
torchvision's resnet18 with seeded random weights (the registry's seed, pretrained=False)
at 224 x 224; the bench process builds the same network and runs each anchor in-process
on the ready input tensor, as in a notebook. The server's time includes HTTP, decoding,
preprocessing, the method and the npy encoding (`async=false`, so no job). Each pair is
measured in interleaved rounds, one call per side and round after the agreement call (which
warms both sides up), and the best time per call is compared (the median beside it).

- occlusion vs Captum `Occlusion(perturbations_per_eval=16)`, same window and stride,
  zero baseline, the top-1 class (given to Captum);
- kernelshap vs Captum `KernelShap`, the same grid mask, samples and batch;
- fullgrad vs pytorch-grad-cam `FullGrad` (when the server lists it);
- lrp (rule epsilon-plus-flat) vs zennit's `Gradient` with `EpsilonPlusFlat` and the
  ResNet canonizer (when the server lists lrp).

Goals: occlusion, kernelshap and fullgrad <= 0.5x; lrp <= 1.0x. `--quick` uses a 32-pixel
window with stride 16 and 64 KernelSHAP samples instead of 16/8 and 200.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import torch
import torchvision

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.attribution import MEAN, SEED, STD  # noqa: E402
from bench.common import (  # noqa: E402
    Timing,
    free_port,
    interleaved,
    pearson,
    photo_jpeg,
    verdict,
)
from model_registry.spec import ModelSpec  # noqa: E402
from service.engine.images import preprocess  # noqa: E402

SIZE = 224
MODEL = "resnet18"
METHODS = ("occlusion", "kernelshap", "fullgrad", "lrp")


def start_server(threads: int, folder: Path) -> tuple[subprocess.Popen, str]:
    models = folder / "models.toml"
    models.write_text(
        "[[models]]\n"
        f'name = "{MODEL}"\n'
        f'architecture = "torchvision:{MODEL}"\n'
        f"input_size = [{SIZE}, {SIZE}]\n"
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
    import time

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


def grid_mask(blocks: int) -> torch.Tensor:
    """The service's grid:N mask (pixel (y, x) in block floor(yN/H) N + floor(xN/W))."""
    rows = torch.arange(SIZE) * blocks // SIZE
    cols = torch.arange(SIZE) * blocks // SIZE
    return (rows[:, None] * blocks + cols[None, :])[None, None].expand(1, 3, SIZE, SIZE)


def zennit_lrp(model: torch.nn.Module, x: torch.Tensor, target: int) -> Callable[[], np.ndarray]:
    """zennit's Gradient attributor with EpsilonPlusFlat and the ResNet canonizer, set up once
    on a copy of the model (as in a notebook), only the call timed."""
    import copy

    from zennit.attribution import Gradient
    from zennit.composites import EpsilonPlusFlat
    from zennit.torchvision import ResNetCanonizer

    composite = EpsilonPlusFlat(canonizers=[ResNetCanonizer()])
    attributor = Gradient(model=copy.deepcopy(model), composite=composite)
    attributor.__enter__()  # the composite stays registered for the bench's lifetime
    one_hot = torch.eye(1000)[[target]]

    def call() -> np.ndarray:
        _, relevance = attributor(x, one_hot)
        return relevance.detach().numpy()

    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs (see the docstring)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds per pair")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--batch", type=int, default=16, help="perturbations per pass, both")
    parser.add_argument(
        "--methods",
        default=",".join(METHODS),
        help=f"comma-separated subset of {','.join(METHODS)} (default: all four)",
    )
    args = parser.parse_args()
    chosen = set(args.methods.split(","))
    if not chosen or not chosen <= set(METHODS):
        parser.error(f"--methods: choose among {','.join(METHODS)}, not {args.methods!r}")
    window, stride = (32, 16) if args.quick else (16, 8)
    samples, blocks = (64, 4) if args.quick else (200, 4)

    from captum.attr import KernelShap, Occlusion

    torch.set_num_threads(args.threads)
    jpeg, image = photo_jpeg(SIZE)
    spec = ModelSpec(MODEL, f"torchvision:{MODEL}", None, (SIZE, SIZE), MEAN, STD, 1000)
    x = preprocess([image], spec, torch.device("cpu"))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = torchvision.models.resnet18(weights=None).eval()
    with torch.no_grad():
        top1 = int(model(x).argmax())
    mask = grid_mask(blocks)
    occlusion, kernel_shap = Occlusion(model), KernelShap(model)

    def captum_occlusion() -> torch.Tensor:
        return occlusion.attribute(
            x,
            sliding_window_shapes=(3, window, window),
            strides=(3, stride, stride),
            baselines=0.0,
            target=top1,
            perturbations_per_eval=args.batch,
        )

    def captum_kernelshap() -> torch.Tensor:
        return kernel_shap.attribute(
            x,
            baselines=0.0,
            target=top1,
            feature_mask=mask,
            n_samples=samples,
            perturbations_per_eval=args.batch,
        )

    results: list[tuple[str, Timing, Timing, float]] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as folder:
        server, url = start_server(args.threads, Path(folder))
        try:
            client = httpx.Client(base_url=url, timeout=3600)
            served = {m["name"] for m in client.get("/v1/methods").json()["data"]}

            def http(path: str, params: str) -> Callable[[], np.ndarray]:
                def call() -> np.ndarray:
                    response = client.post(
                        f"/v1/models/{MODEL}/{path}?{params}&format=npy&async=false",
                        files={"image": ("photo.jpg", jpeg, "image/jpeg")},
                    )
                    response.raise_for_status()
                    return np.load(io.BytesIO(response.content))

                return call

            def pair(name: str, ours: Callable, anchor: Callable, anchor_name: str, goal: float):
                r = pearson(ours(), np.asarray(anchor()))
                print(f"agreement: r({name}, {anchor_name}) = {r:.6f}", flush=True)
                timed = interleaved(
                    {name: ours, anchor_name: anchor}, args.rounds, 1, 0
                )  # warm: above
                results.append((name, timed[name], timed[anchor_name], goal))
                print(
                    f"  {name}: {timed[name].best:.3f} s, {anchor_name}: "
                    f"{timed[anchor_name].best:.3f} s",
                    flush=True,
                )

            occ = (
                f"method=occlusion&window={window}&stride={stride}&baseline=zero&batch={args.batch}"
            )
            if "occlusion" in chosen:
                pair(
                    "occlusion",
                    http("attributions", occ),
                    captum_occlusion,
                    "captum Occlusion",
                    0.5,
                )
            shap = (
                f"method=kernelshap&mask=grid:{blocks}&samples={samples}&baseline=zero"
                f"&batch={args.batch}&seed=0"
            )
            if "kernelshap" in chosen:
                pair(
                    "kernelshap",
                    http("attributions", shap),
                    captum_kernelshap,
                    "captum KernelShap",
                    0.5,
                )
            if "fullgrad" not in chosen:
                pass
            elif "fullgrad" in served:
                from pytorch_grad_cam import FullGrad

                full_grad = FullGrad(model=model, target_layers=[])

                def grad_cam_fullgrad() -> np.ndarray:
                    return full_grad(input_tensor=x, targets=None)

                pair(
                    "fullgrad",
                    http("cam", "method=fullgrad"),
                    grad_cam_fullgrad,
                    "pytorch-grad-cam FullGrad",
                    0.5,
                )
                full_grad.activations_and_grads.release()
            else:
                notes.append("fullgrad: not served yet")
            if "lrp" not in chosen:
                pass
            elif "lrp" not in served:
                notes.append("lrp: not served yet")
            else:
                pair(
                    "lrp",
                    http("attributions", "method=lrp&rule=epsilon-plus-flat"),
                    zennit_lrp(model, x, top1),
                    "zennit EpsilonPlusFlat",
                    1.0,
                )
        finally:
            server.terminate()
            server.wait(timeout=30)

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    print(
        f"\n{MODEL} (seeded random weights), {SIZE}x{SIZE}, 1 image, torch {torch.__version__}, "
        f"{args.threads} threads, commit {commit}, load average "
        f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}"
    )
    print(
        f"occlusion window {window} stride {stride}; kernelshap grid:{blocks} {samples} samples; "
        f"batch {args.batch}; {args.rounds} rounds x 1 call per side"
    )
    print("ratios, layerscope over HTTP / library in-process (best; median):")
    for name, mine, anchor, goal in results:
        best, median = mine.best / anchor.best, mine.median / anchor.median
        print(
            f"  {name:12s} {mine.best:7.3f} s / {anchor.best:7.3f} s = {best:6.3f}; "
            f"{median:6.3f}  {verdict(best, goal)}"
        )
    for note in notes:
        print(note)


if __name__ == "__main__":
    main()
