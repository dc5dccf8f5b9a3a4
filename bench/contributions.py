"""Channel contributions for one image against Captum's LayerGradientXActivation, in-process.

    python bench/contributions.py [--size 224] [--layer layer3] [--rounds 8] [--block 6]

A torchvision resnet50 with the registry's seeded random weights, loaded as the server
loads it (`load_model`: eval mode, parameters frozen, convolutions packed for the passes
that ask for it). layerscope's engine (`channel_contributions`, grad-x-act)
and Captum's `LayerGradientXActivation(model, layer).attribute(x, target=t).sum((2, 3))`
run on the same ready input tensor and class, in the same process, interleaved in blocks
(`common.interleaved_medians`) so background load hits both alike. A second Captum anchor
runs on a copy whose parameters are trainable, as a user's notebook model is. Both answers
are checked equal before timing. Ratios below 1 mean layerscope is faster.
Goal: grad-x-act / Captum (same frozen model) <= 1.0.

    python bench/contributions.py --dataset [--layer relu3]

The dataset job's engine (`dataset_contributions`) over all 1,797 digits on the digits
model against an in-process anchor: the same pictures decoded, preprocessed and batched
alike, Captum's LayerGradientXActivation for each picture's label, summed per class.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import interleaved_medians  # noqa: E402
from model_registry.registry import LoadedModel, load_model  # noqa: E402
from model_registry.spec import ModelSpec  # noqa: E402
from service.engine.attribution.contributions import (  # noqa: E402
    channel_contributions,
    plan_contributions,
)


def _model(size: int) -> LoadedModel:
    spec = ModelSpec(
        name="resnet50",
        architecture="torchvision:resnet50",
        weights=None,
        input_size=(size, size),
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        num_classes=1000,
    )
    return load_model(spec, torch.device("cpu"))


def _dataset(layer: str, rounds: int) -> None:
    import time

    import numpy as np
    from captum.attr import LayerGradientXActivation

    from model_registry.config import default_specs
    from model_registry.datasets import DigitsDataset
    from service.engine.attribution.dataset_contributions import (
        dataset_contributions,
        plan_dataset_contributions,
    )
    from service.engine.images import decode_image, preprocess

    model = load_model(default_specs()[0], torch.device("cpu"))
    dataset = DigitsDataset()
    options = {"method": "grad-x-act", "steps": 32, "baseline": "zero", "top": 10}
    plan = plan_dataset_contributions(model, dataset, layer=layer, **options)
    attribution = LayerGradientXActivation(model.module, model.module.get_submodule(layer))

    def job() -> object:
        return dataset_contributions(model, dataset, plan, max_pixels=10**8)

    def anchor() -> np.ndarray:
        sums = np.zeros((len(dataset.classes), plan.contribution.layout.channels))
        for first in range(0, len(dataset), plan.batch_size):
            indices = range(first, min(first + plan.batch_size, len(dataset)))
            pictures = [decode_image(dataset.read(i), max_pixels=10**8, index=i) for i in indices]
            labels = [dataset.label(i) for i in indices]
            batch = preprocess(pictures, model.spec, model.device)
            values = attribution.attribute(batch, target=labels).sum(dim=(2, 3)).detach()
            np.add.at(sums, labels, values.numpy())
        return sums

    times: dict[str, list[float]] = {"job": [], "anchor": []}
    for _ in range(rounds):  # alternating, the first round a warm-up
        for name, run in (("job", job), ("anchor", anchor)):
            start = time.perf_counter()
            answer = run()
            times[name].append(time.perf_counter() - start)
            if name == "job":
                result = answer
            else:
                sums = answer
    job_s, anchor_s = (float(np.median(times[n][1:])) for n in ("job", "anchor"))
    reference = sums / result.counts[:, None]
    assert np.allclose(result.matrix, reference, rtol=1e-4, atol=1e-4 * np.abs(reference).max())
    print(
        f"digits {layer}, {len(dataset)} pictures, batches of {plan.batch_size}, "
        f"{torch.get_num_threads()} threads"
    )
    print(f"  dataset job (engine)            {job_s:7.2f} s  {job_s / anchor_s:5.2f}x")
    print(f"  Captum LayerGradientXActivation {anchor_s:7.2f} s  1.00x  (median of {rounds - 1})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--layer", default="layer3")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--block", type=int, default=6)
    parser.add_argument("--dataset", action="store_true", help="the digits dataset job")
    args = parser.parse_args()
    if args.dataset:
        return _dataset("relu3" if args.layer == "layer3" else args.layer, max(2, args.rounds))
    from captum.attr import LayerGradientXActivation

    model = _model(args.size)
    trainable = copy.deepcopy(model.module)
    for param in trainable.parameters():
        param.requires_grad_(True)
    inputs = [
        torch.randn(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(i))
        for i in range(4)
    ]
    target = 7
    plan = plan_contributions(model, layer=args.layer, targets=str(target))
    frozen = LayerGradientXActivation(model.module, model.module.get_submodule(args.layer))
    user = LayerGradientXActivation(trainable, trainable.get_submodule(args.layer))

    def ours(i: int) -> torch.Tensor:
        return channel_contributions(model, inputs[i % 4], plan)[1][:, 0]

    def captum(i: int) -> torch.Tensor:
        return frozen.attribute(inputs[i % 4], target=target).sum(dim=(2, 3))

    def captum_trainable(i: int) -> torch.Tensor:
        return user.attribute(inputs[i % 4], target=target).sum(dim=(2, 3)).detach()

    reference = captum(0)
    torch.testing.assert_close(
        ours(0), reference, rtol=1e-4, atol=1e-4 * reference.abs().max().item()
    )
    runs = {
        "layerscope grad-x-act": ours,
        "Captum (frozen model)": captum,
        "Captum (trainable parameters)": captum_trainable,
    }
    medians = interleaved_medians(runs, rounds=args.rounds, block=args.block)
    anchor = medians["Captum (frozen model)"]
    print(
        f"resnet50 {args.size}x{args.size}, layer {args.layer}, one image, "
        f"{torch.get_num_threads()} threads, median of {args.rounds * (args.block - 1)} calls"
    )
    for name, seconds in medians.items():
        print(f"  {name:32s} {seconds * 1000:8.1f} ms  {seconds / anchor:5.2f}x")


if __name__ == "__main__":
    main()
