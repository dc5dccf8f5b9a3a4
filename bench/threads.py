"""Why one thread calls torch in layerscope: a forward pass against the threads that call torch.

    python bench/threads.py [--repeat 15] [--threads 2]

Each case runs in a fresh process (an OpenMP team, once made, stays for the process's life)
and times the median inference forward pass of torchvision's resnet50 (seeded random
weights, one 224 x 224 image):

- main only: the main thread builds the model and runs it, as a script does;
- worker only: one worker thread builds and runs it, and no other thread ever calls torch
  (layerscope's device thread);
- both: the main thread runs it, then a worker thread, then the main thread again (the
  issue's ten lines): once a second thread has called torch, both are slower.

Then, in one process, resnet18's stem max pool (64 channels at 112 x 112) with torch's
channels-first kernel and with layerscope's channels-last path
(`model_registry/fast_paths/pooling.py`), and the same forward pass with each.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import median_seconds  # noqa: E402


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    return median_seconds(fn, repeat=repeat) * 1000


def forward_pass(threads: int) -> Callable[[], object]:
    import torch
    import torchvision

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None).eval()
    batch = torch.randn(1, 3, 224, 224)

    def run() -> object:
        with torch.inference_mode():
            return model(batch)

    return run


def case(name: str, repeat: int, threads: int) -> dict[str, float]:
    """One case, in this process (called in a fresh one)."""
    if name == "main only":
        return {"main": median_ms(forward_pass(threads), repeat)}
    worker = ThreadPoolExecutor(1)
    if name == "worker only":
        run = worker.submit(forward_pass, threads).result()
        return {"worker": worker.submit(median_ms, run, repeat).result()}
    run = forward_pass(threads)
    first = median_ms(run, repeat)
    in_worker = worker.submit(median_ms, run, repeat).result()
    return {"main": first, "then worker": in_worker, "then main again": median_ms(run, repeat)}


def pooling(repeat: int, threads: int) -> dict[str, float]:
    import torch
    import torch.nn.functional as F
    import torchvision

    from model_registry.fast_paths.pooling import speed_up_max_pooling

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    stem = torch.relu(torch.randn(1, 64, 112, 112))
    plain = torchvision.models.resnet18(weights=None).eval()
    fast = torchvision.models.resnet18(weights=None).eval()
    fast.load_state_dict(plain.state_dict())
    speed_up_max_pooling(fast)
    batch = torch.randn(1, 3, 224, 224)
    with torch.inference_mode():
        if not torch.equal(plain.maxpool(stem), fast.maxpool(stem)):
            raise SystemExit("the channels-last max pool differs from torch's own")
        return {
            "stem pool, channels-first": median_ms(
                lambda: F.max_pool2d(stem, 3, 2, 1), repeat * 10
            ),
            "stem pool, channels-last path": median_ms(lambda: fast.maxpool(stem), repeat * 10),
            "resnet18 forward, torch's pool": median_ms(lambda: plain(batch), repeat),
            "resnet18 forward, channels-last pool": median_ms(lambda: fast(batch), repeat),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # run one case here, print JSON
    args = parser.parse_args()
    if args.case:
        result = pooling(args.repeat, args.threads) if args.case == "pooling" else None
        print(json.dumps(result or case(args.case, args.repeat, args.threads)))
        return
    results: dict[str, dict[str, float]] = {}
    for name in ("main only", "worker only", "both", "pooling"):
        command = [sys.executable, __file__, "--case", name, "--repeat", str(args.repeat)]
        command += ["--threads", str(args.threads)]
        output = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT)
        results[name] = json.loads(output.stdout.splitlines()[-1])
    print(f"resnet50 inference forward pass, median of {args.repeat}, {args.threads} threads:")
    alone = results["main only"]["main"]
    for name in ("main only", "worker only"):
        for where, ms in results[name].items():
            print(f"  {name:12s} {where:16s} {ms:7.1f} ms  ({ms / alone:.2f}x main only)")
    first = results["both"]["main"]  # same process, minutes apart at most: the fair baseline
    for where, ms in results["both"].items():
        print(f"  {'both':12s} {where:16s} {ms:7.1f} ms  ({ms / first:.2f}x its first)")
    print("max pooling (values bitwise equal):")
    for where, ms in results["pooling"].items():
        print(f"  {where:38s} {ms:7.2f} ms")


if __name__ == "__main__":
    main()
