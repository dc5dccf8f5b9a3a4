"""Occlusion in-process: channels-last perturbed batches against contiguous ones and Captum.

    python bench/occlusion_layout.py [--rounds 3] [--threads 1]

torchvision's resnet18 (random weights) at 224 x 224, one random image, window 32, stride
16, zero baseline, 16 perturbed inputs per pass on every side. `compute_input_attributions`
runs twice, once as served (channels-last batches, `perturbation.ablation.channels_last`)
and once with that layout switched off, against Captum's `Occlusion` with
`perturbations_per_eval=16`; rounds are interleaved and the median per call is compared.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import service.engine.attribution.perturbation.ablation as ablation  # noqa: E402
from model_registry.registry import load_model  # noqa: E402
from model_registry.spec import ModelSpec  # noqa: E402
from service.engine.attribution.input_attributions import (  # noqa: E402
    compute_input_attributions,
    plan_input_attributions,
)

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    from captum.attr import Occlusion

    torch.set_num_threads(args.threads)
    spec = ModelSpec("resnet18", "torchvision:resnet18", None, (224, 224), MEAN, STD, 1000)
    model = load_model(spec, torch.device("cpu"))
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    given = {"window": 32, "stride": 16, "batch": 16}
    plan = plan_input_attributions(model, method="occlusion", given=given, targets="1")
    blank = np.zeros((1, 224, 224, 3), np.uint8)
    occlusion = Occlusion(model.module)
    served_layout = ablation.channels_last

    def ours() -> None:
        compute_input_attributions(model, x, plan, inputs=blank)

    def contiguous() -> None:
        ablation.channels_last = lambda inputs: inputs
        try:
            ours()
        finally:
            ablation.channels_last = served_layout

    def captum() -> None:
        occlusion.attribute(
            x,
            sliding_window_shapes=(3, 32, 32),
            strides=(3, 16, 16),
            baselines=0.0,
            target=1,
            perturbations_per_eval=16,
        )

    runs = {"channels-last": ours, "contiguous": contiguous, "captum": captum}
    for run in runs.values():
        run()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, values in times.items():
        print(f"{name:14s} median {medians[name]:.2f} s  {[round(v, 2) for v in values]}")
    for name in ("channels-last", "contiguous"):
        print(f"{name} / captum = {medians[name] / medians['captum']:.3f}")


if __name__ == "__main__":
    main()
