"""Print the numbers behind the insight acceptance bars, measured on the built-in model.

    .venv/bin/python scripts/measure_insight.py

maximize: activation of each relu3 channel for its optimized image / for uniform noise;
invert: feature-distance drop and pixel RMSE per layer on scikit-learn's china.jpg;
embedding: 5-NN accuracy (5-fold) of the t-SNE of 300 digits; stats: sparsity by depth.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from model_registry.config import default_specs  # noqa: E402
from model_registry.registry import load_model  # noqa: E402
from service.engine.images import preprocess  # noqa: E402
from service.engine.insight.embedding import extract_features, plan_embedding, project  # noqa: E402
from service.engine.insight.forward import layer_tensor  # noqa: E402
from service.engine.insight.invert import invert, plan_invert  # noqa: E402
from service.engine.insight.maximize import maximize, plan_maximize  # noqa: E402
from service.engine.insight.stats import compute_stats, plan_stats  # noqa: E402
from service.samples import photos  # noqa: E402


def main() -> None:
    torch.set_num_threads(1)
    model = load_model(default_specs()[0], torch.device("cpu"))
    noise = (torch.rand((16, 1, 32, 32), generator=torch.Generator().manual_seed(123)) - 0.5) / 0.5
    with torch.inference_mode():
        baseline = layer_tensor(model.module, noise, "relu3", calls=1).mean(dim=(0, 2, 3))
    ratios, start = [], time.perf_counter()
    for channel in range(len(baseline)):
        result = maximize(model, plan_maximize(model, layer="relu3", channel=channel))
        base = float(baseline[channel])
        ratios.append(
            result.activation / base if base > 0 else float("inf")
        )  # noise never fires it
    ratios = np.array(ratios)
    print(
        f"maximize relu3, {len(ratios)} channels x 256 steps "
        f"({time.perf_counter() - start:.1f} s): "
        f">=5x noise {int(np.sum(ratios >= 5))} of {len(ratios)} ({np.mean(ratios >= 5):.0%}), "
        f"median {np.median(ratios):.1f}x, "
        f"min {ratios.min():.1f}x"
    )

    batch = preprocess([photos()["china.jpg"]], model.spec, model.device)
    for layer in ("conv1", "relu1", "relu2", "relu3", "fc"):
        result = invert(model, batch, plan_invert(model, layer=layer))
        rmse = float(np.sqrt(((result.image - result.original) ** 2).mean()))
        print(f"invert {layer:6s} distance drop {result.distance_drop:.3f}, pixel RMSE {rmse:.3f}")

    from sklearn.datasets import load_digits
    from sklearn.model_selection import cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    from model_registry.builtin import digits

    data = load_digits()
    images = [digits.digit_image(data.images[i]) for i in range(300)]
    plan = plan_embedding(model, layer=None, method="tsne", seed=0, perplexity=30.0, count=300)
    points = project(
        extract_features(model, [preprocess(images, model.spec, model.device)], plan), plan
    ).points
    accuracy = cross_val_score(KNeighborsClassifier(5), points, data.target[:300], cv=5).mean()
    print(f"t-SNE of 300 digits at {plan.describe()}: 5-NN accuracy {accuracy:.3f}")

    stats = compute_stats(model, batch, plan_stats(model, ["relu1", "relu2", "relu3"]))
    print("sparsity on china.jpg: " + ", ".join(f"{s.name} {s.sparsity:.2f}" for s in stats))


if __name__ == "__main__":
    main()
