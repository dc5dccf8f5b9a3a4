"""Packed-weight convolutions against torch's own: forward passes of torchvision networks.

    python bench/convolution.py [--rounds 6] [--threads 2] [--models resnet18,resnet50,...]

For each network (seeded random weights, one 224 x 224 picture, inference mode) two copies
run in alternating blocks in this process: one as torchvision builds it, one with
layerscope's packed-weight convolutions run inside `packed_weights()`
(`model_registry/fast_paths/packed_convolution.py`: the registry installs them in every
model it loads on the CPU, and a CAM's passes use them). Both copies have layerscope's max
pooling path, so the ratio is the convolutions' alone. It prints the median forward pass of
each, their ratio, and how far the logits and the last packed layer's output are from torch's,
relative to their largest magnitude.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import interleaved_medians  # noqa: E402
from model_registry.fast_paths.packed_convolution import (  # noqa: E402
    packed_layers,
    packed_weights,
    speed_up_convolutions,
)
from model_registry.fast_paths.pooling import speed_up_max_pooling  # noqa: E402

MODELS = "resnet18,resnet50,mobilenet_v3_large,densenet121,efficientnet_b0,convnext_tiny"


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def measure(name: str, rounds: int) -> str:
    """One network's line: both medians, their ratio and the differences."""
    torch.manual_seed(0)
    plain = getattr(torchvision.models, name)(weights=None).eval()
    speed_up_max_pooling(plain)
    packed = copy.deepcopy(plain)
    layers = speed_up_convolutions(packed)
    last = packed_layers(packed)[-1]
    last_name = next(n for n, m in packed.named_modules() if m is last)
    pictures = torch.randn((8, 1, 3, 224, 224), generator=torch.Generator().manual_seed(1))
    seen: dict[str, torch.Tensor] = {}

    def packed_pass(i: int) -> torch.Tensor:
        with packed_weights():  # as a CAM's passes run
            return packed(pictures[i % 8])

    nets = {"torch": (plain, lambda i: plain(pictures[i % 8])), "packed": (packed, packed_pass)}
    with torch.inference_mode():
        for key, (net, run) in nets.items():
            handle = net.get_submodule(last_name).register_forward_hook(
                lambda _m, _i, out, key=key: seen.__setitem__(key, out.clone())
            )
            seen[f"{key} logits"] = run(0)
            handle.remove()
        medians = interleaved_medians({k: run for k, (_, run) in nets.items()}, rounds=rounds)
    logits = relative_difference(seen["packed logits"], seen["torch logits"])
    stage = relative_difference(seen["packed"], seen["torch"])
    ms = {k: v * 1000 for k, v in medians.items()}
    return (
        f"{name:20s} {ms['torch']:6.1f} ms {ms['packed']:6.1f} ms "
        f"{ms['packed'] / ms['torch']:6.3f}  logits {logits:.1e}, {last_name} {stage:.1e}"
        f"  ({layers} layers packed)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6, help="alternating blocks per copy")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--models", default=MODELS, help="torchvision model names, comma-separated")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, 1 x 3 x 224 x 224, inference mode")
    print(f"{'model':20s} {'torch':>9s} {'packed':>9s} {'ratio':>6s}  max |diff| / max |value|")
    for name in args.models.split(","):
        print(measure(name, args.rounds), flush=True)


if __name__ == "__main__":
    main()
