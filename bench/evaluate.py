"""The dataset evaluation against Quantus and pytorch-grad-cam in-process.

    python bench/evaluate.py [--count 500] [--samples 10] [--batch 32]

The built-in digits model, the first COUNT digits, 5 methods (gradcam, scorecam,
integrated-gradients, occlusion, lrp) x 6 metrics (deletion, insertion, road-combined,
sparseness, max-sensitivity, pointing-game; max-sensitivity with SAMPLES noisy draws, both
sides alike). layerscope: the dataset job's engine (`evaluate_dataset`: reading, decoding,
masks, every map and metric), timed whole. Anchors, batch by batch, through the references'
own classes: pytorch-grad-cam's ROADCombined, Quantus's Sparseness, MaxSensitivity and
PointingGame, summed. Quantus and pytorch-grad-cam have no deletion or insertion AUC: the
anchors leave those two out, so they do less work than the job. Two anchors:

- `references` (the goal's): the notebook without layerscope. The maps, and MaxSensitivity's
  re-explanations, come from the references' own explainers (bench/reference_explainers.py:
  grad-cam's GradCAM and ScoreCAM, Captum's IntegratedGradients and Occlusion, zennit's
  LRP), and making the maps is timed.
- `layerscope`: the metrics alone. The maps are layerscope's, made outside the timing, and
  MaxSensitivity re-explains with the same layerscope method: the job re-explains the same
  way, so this ratio shows what batching the metrics saves, not the methods' speed.

Goals: layerscope <= 120 s at COUNT=500; layerscope / `references` anchor <= 0.5.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("TQDM_DISABLE", "1")  # read when tqdm is imported: grad-cam's ScoreCAM
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from model_registry.config import default_specs  # noqa: E402
from model_registry.datasets import DigitsDataset  # noqa: E402
from model_registry.registry import load_model  # noqa: E402
from service.engine.evaluation.dataset_run import evaluate_dataset  # noqa: E402
from service.engine.evaluation.masks import dataset_masks  # noqa: E402
from service.engine.evaluation.plan import plan_evaluation  # noqa: E402
from service.engine.evaluation.run import predicted  # noqa: E402
from service.engine.images import decode_image, preprocess  # noqa: E402

METHODS = ["gradcam", "scorecam", "integrated-gradients", "occlusion", "lrp"]
METRICS = [
    "deletion",
    "insertion",
    "road-combined",
    "sparseness",
    "max-sensitivity",
    "pointing-game",
]
GOAL_S, GOAL_RATIO = 120.0, 0.5
PIXELS = 1 << 24


def anchor(model, plan, dataset, indices, batch_size: int, samples: int, explainers: str) -> float:
    """Seconds the references take, batch by batch; `explainers`: `references` (their own
    maps, timed) or `layerscope` (layerscope's maps, untimed)."""
    import quantus
    from pytorch_grad_cam.metrics.road import ROADCombined
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    from bench.reference_explainers import reference_explainer

    theirs = {
        e.method: reference_explainer(e.method, model.module, e.parameters) for e in plan.explainers
    }
    own = explainers == "references"
    spent = 0.0
    for start in range(0, len(indices), batch_size):
        chunk = indices[start : start + batch_size]
        pictures = [decode_image(dataset.read(i), max_pixels=PIXELS) for i in chunk]
        masks = dataset_masks(
            dataset, chunk, [p.size for p in pictures], model.spec, max_pixels=PIXELS
        )
        batch = preprocess(pictures, model.spec, model.device)
        classes = predicted(model, batch)
        s_batch = np.stack(masks)[:, None].astype(np.float32)
        x, y = batch.numpy(), classes.numpy()
        for explainer in plan.explainers:
            if own:
                began = time.perf_counter()
                maps = theirs[explainer.method](batch, classes)
                spent += time.perf_counter() - began
            else:
                maps = explainer.maps(model, batch, classes).detach().numpy()

            # Quantus passes model=, inputs=, targets= by name; `model` is ignored
            def explain(model, inputs, targets, explainer=explainer, loaded=model, **_kwargs):  # noqa: ARG001
                tensor = torch.as_tensor(np.asarray(inputs), dtype=torch.float32)
                labels = torch.as_tensor(np.asarray(targets)).long()
                if own:
                    return theirs[explainer.method](tensor, labels)
                return explainer.maps(loaded, tensor, labels).detach().numpy()

            flat = np.abs(maps).sum(axis=1)  # one value per pixel, as /attributions ranks
            began = time.perf_counter()
            targets = [ClassifierOutputSoftmaxTarget(int(t)) for t in y]
            ROADCombined(percentiles=list(range(10, 100, 10)))(batch, flat, targets, model.module)
            common = dict(
                model=model.module,
                x_batch=x,
                y_batch=y,
                a_batch=maps.copy(),
                channel_first=True,
                device="cpu",
            )
            quantus.Sparseness(disable_warnings=True)(**common)
            quantus.PointingGame(disable_warnings=True)(**common, s_batch=s_batch)
            quantus.MaxSensitivity(nr_samples=samples, lower_bound=0.2, disable_warnings=True)(
                **common, explain_func=explain
            )
            spent += time.perf_counter() - began
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--no-anchor", action="store_true")
    parser.add_argument(
        "--anchors",
        default="references,layerscope",
        help="which anchors to time, comma-separated (the goal's is `references`)",
    )
    args = parser.parse_args()
    torch.set_num_threads(2)
    model = load_model(default_specs()[0], torch.device("cpu"))
    dataset = DigitsDataset()
    options = {"max-sensitivity": {"samples": str(args.samples)}}
    plan = plan_evaluation(model, methods=METHODS, metrics=METRICS, options=options, masks=True)
    indices = tuple(range(args.count))
    began = time.perf_counter()
    scores = evaluate_dataset(model, dataset, plan, indices, classes=None, max_pixels=PIXELS)
    ours = time.perf_counter() - began
    print(
        f"layerscope: {args.count} digits x {len(METHODS)} methods x {len(METRICS)} metrics "
        f"(max-sensitivity samples={args.samples}): {ours:.1f} s (goal <= {GOAL_S:.0f} s "
        f"at 500)"
    )
    for method, metrics in scores.values.items():
        means = ", ".join(f"{k}={np.nanmean(v):.3f}" for k, v in metrics.items())
        print(f"  {method}: {means}")
    if args.no_anchor:
        return
    described = {
        "references": "their own explainers' maps, timed",
        "layerscope": "layerscope's maps given, untimed",
    }
    for explainers in args.anchors.split(","):
        theirs = anchor(model, plan, dataset, indices, args.batch, args.samples, explainers)
        print(
            f"Quantus + pytorch-grad-cam (4 of the 6 metrics; {described[explainers]}): "
            f"{theirs:.1f} s, ratio layerscope / anchor {ours / theirs:.2f}"
            + (f" (goal <= {GOAL_RATIO})" if explainers == "references" else "")
        )


if __name__ == "__main__":
    main()
