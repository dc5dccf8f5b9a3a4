"""Sampling estimators over a feature mask: Shapley value sampling, KernelSHAP and LIME.

Each takes one image's `Coalitions` and a seeded CPU generator, and returns float64
[K, T] (one value per feature and target). The draws depend only on the seed, the
number of features and `samples`, so the same request gives the same answer.
"""

from __future__ import annotations

import torch

from service.engine.attribution.perturbation.coalitions import Coalitions

# LIME's default for images (lime_image): an exponential kernel of width 0.25 on the
# cosine distance between a coalition and the full image in the binary representation.
LIME_KERNEL_WIDTH = 0.25


def shapley_sampling(game: Coalitions, samples: int, generator: torch.Generator) -> torch.Tensor:
    """Shapley value sampling (Strumbelj & Kononenko 2010), as Captum's
    ShapleyValueSampling: for each of `samples` random feature orders, features are added
    to the baseline one at a time and each is credited with the change of the score. Every
    order sums to f(x) - f(baseline) exactly, so the mean does too."""
    k = game.features
    if k == 1:
        ends = game.scores(torch.tensor([[False], [True]]))
        return (ends[1] - ends[0])[None]
    orders = torch.stack([torch.randperm(k, generator=generator) for _ in range(samples)])
    # coalition j of an order keeps its first j features, j = 0..K
    ranks = torch.empty_like(orders)
    ranks.scatter_(1, orders, torch.arange(k).expand(samples, -1))
    steps = torch.arange(k + 1)[:, None]  # [K + 1, 1]
    keep = ranks[:, None, :] < steps[None]  # [samples, K + 1, K]
    inner = game.scores(keep[:, 1:k].reshape(-1, k)).view(samples, k - 1, -1)
    ends = game.scores(torch.stack([torch.zeros(k), torch.ones(k)]))
    count = ends.shape[1]
    chain = torch.cat(
        [ends[0].expand(samples, 1, count), inner, ends[1].expand(samples, 1, count)], dim=1
    )  # [samples, K + 1, T]
    gains = chain[:, 1:] - chain[:, :-1]  # gain of the j-th feature of each order
    values = torch.zeros(k, count, dtype=torch.float64)
    values.index_add_(0, orders.reshape(-1), gains.reshape(-1, count))
    return values / samples


def kernel_shap(game: Coalitions, samples: int, generator: torch.Generator) -> torch.Tensor:
    """KernelSHAP (Lundberg & Lee 2017): coalition sizes s in 1..K-1 drawn with probability
    proportional to the Shapley kernel (K-1) / (s (K-s)), members uniformly; the linear
    model is fit by least squares under the constraint that it sums to f(x) - f(baseline)
    (the `shap` library's way), so the answer is complete by construction."""
    k = game.features
    ends = torch.stack([torch.zeros(k), torch.ones(k)]).double()
    if k == 1:
        scored = game.scores(ends)
        return (scored[1] - scored[0])[None]
    sizes = torch.arange(1, k, dtype=torch.float64)
    weights = (k - 1) / (sizes * (k - sizes))
    drawn = torch.multinomial(weights, samples, replacement=True, generator=generator) + 1
    keep = torch.zeros(samples, k, dtype=torch.float64)
    for row, size in enumerate(drawn.tolist()):
        keep[row, torch.randperm(k, generator=generator)[:size]] = 1.0
    scored = game.scores(torch.cat([ends, keep]))  # the ends share the samples' passes
    total = scored[1] - scored[0]  # [T]
    y = scored[2:] - scored[0]  # [S, T]
    last = keep[:, -1:]
    design = keep[:, :-1] - last
    rhs = y - last * total
    head = torch.linalg.lstsq(design, rhs, driver="gelsd").solution  # [K-1, T]
    return torch.cat([head, (total - head.sum(dim=0))[None]])


def lime(game: Coalitions, samples: int, generator: torch.Generator) -> torch.Tensor:
    """LIME (Ribeiro et al. 2016) as lime_image does it: features kept with probability
    1/2 (the first sample keeps all), each coalition weighted by exp(-d^2 / 0.25^2) with d
    its cosine distance to the full image, and a weighted least-squares linear model with
    an intercept; its coefficients are the attributions."""
    k = game.features
    keep = (torch.rand(samples, k, generator=generator) < 0.5).double()
    keep[0] = 1.0
    kept = keep.sum(dim=1)
    distance = 1 - kept / (kept.sqrt().clamp_min(1e-12) * k**0.5)
    weight = torch.exp(-(distance**2) / LIME_KERNEL_WIDTH**2).sqrt()[:, None]
    y = game.scores(keep)
    design = torch.cat([torch.ones(samples, 1, dtype=torch.float64), keep], dim=1)
    solution = torch.linalg.lstsq(design * weight, y * weight, driver="gelsd").solution
    return solution[1:]
