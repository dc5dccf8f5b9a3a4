"""Feature-map speed against the in-process anchors, measured in one run on one machine.

1. Median end-to-end HTTP latency of POST /feature-maps (resnet18, layer3, all channels,
   npy) divided by an in-process forward pass with a hook on layer3, every call a different
   picture on both sides, in alternating blocks (bench.common.interleaved_medians). Goal <= 0.95.
2. A PNG grid of 32 channels of conv1 over HTTP divided by the seeds' matplotlib approach
   (hook, plt.subplots grid, savefig(dpi=300)), forward pass included in both. Goal <= 0.10.

Run: .venv/bin/python bench/feature_maps.py [--repeat N]
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import httpx
import numpy as np
import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    distinct_pictures,
    interleaved_medians,
    median_seconds,
    model_tensor,
    photo_png,
    report,
    running_server,
)


def anchor_model() -> torch.nn.Module:
    """The same network the server runs without a weights cache: seeded random resnet18."""
    from model_registry.config import default_specs
    from model_registry.loading import build_model

    return build_model(default_specs()[1]).module


def hooked_forward(model: torch.nn.Module, x: torch.Tensor, layer: str) -> torch.Tensor:
    """What a user's script does: a hook on the layer, a full forward pass, hook removed."""
    store: dict[str, torch.Tensor] = {}
    handle = model.get_submodule(layer).register_forward_hook(
        lambda _m, _i, o: store.__setitem__("out", o)
    )
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    return store["out"]


def matplotlib_grid(model: torch.nn.Module, x: torch.Tensor) -> bytes:
    """The seeds' recipe: hook conv1, a 4x8 plt.subplots grid of 32 channels, savefig(dpi=300)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    maps = hooked_forward(model, x, "conv1")[0]
    fig, axs = plt.subplots(4, 8, figsize=(16, 8))
    for i in range(32):
        ax = axs[i // 8, i % 8]
        ax.imshow(maps[i].cpu().numpy(), cmap="viridis")
        ax.axis("off")
        ax.set_title(f"Channel {i}")
    plt.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=300)
    plt.close(fig)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    from model_registry.config import default_specs

    spec = default_specs()[1]
    _, data = photo_png((224, 224))
    x = model_tensor(data, spec)
    model = anchor_model()
    print(
        f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
        f"{torch.get_num_threads()} threads, CPU"
    )

    pictures = distinct_pictures(2 * 6 * args.rounds)  # every call its own picture
    tensors = [model_tensor(d, spec) for d in pictures]
    with running_server({"LAYERSCOPE_DEVICE": "cpu"}) as base, httpx.Client(timeout=60) as client:
        url = f"{base}/v1/models/resnet18/feature-maps"
        files = {"image": ("china.png", data, "image/png")}
        layer3 = {"layers": "layer3", "channels": "all", "format": "npy"}

        def http_layer3(i: int) -> None:
            upload = {"image": ("p.png", pictures[i % len(pictures)], "image/png")}
            answer = client.post(url, params=layer3, files=upload)
            answer.raise_for_status()
            np.load(io.BytesIO(answer.content))

        def http_grid() -> None:
            answer = client.post(
                url, params={"layers": "conv1", "channels": "first:32"}, files=files
            )
            answer.raise_for_status()

        served = np.load(io.BytesIO(client.post(url, params=layer3, files=files).content))
        direct = hooked_forward(model, x, "layer3").numpy()
        print(f"check: max |http - in-process| on layer3 = {np.abs(served - direct).max():.2e}")

        medians = interleaved_medians(
            {
                "http": http_layer3,
                "anchor": lambda i: hooked_forward(model, tensors[i % len(tensors)], "layer3"),
            },
            rounds=args.rounds,
        )
        report("layer3 npy", medians["http"], medians["anchor"], 0.95, "in-process hooked forward")

        grid_anchor = median_seconds(
            lambda: matplotlib_grid(model, x), repeat=max(3, args.repeat // 6), warmup=1
        )
        grid_ours = median_seconds(http_grid, repeat=args.repeat)
        report(
            "conv1 32-channel PNG grid",
            grid_ours,
            grid_anchor,
            0.10,
            "matplotlib subplots + savefig(dpi=300)",
        )


if __name__ == "__main__":
    main()
