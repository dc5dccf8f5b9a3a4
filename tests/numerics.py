"""One tolerance for comparing a served value with a reference computed another way.

A reference computed another way (another batch composition, another oneDNN kernel for
AVX2 or AVX-512, another library) sums the same products in another order. float32 keeps a
24-bit significand (eps = 2**-23, about 1.2e-7); a convolution of K = C * k * k products
summed in another order moves its result by about sqrt(K) * eps of the magnitudes summed,
and each later layer carries that on. On a tiny resnet18 the largest change seen between a
batch of 2 and single pictures on AVX2 was 2.4e-6 of the layer's largest value (layer4).
The tolerance below, 1e-4 of the largest reference value, leaves a margin of 40x over that,
and is still 3-4 orders of magnitude below what a wrong channel, layer, picture or
preprocessing step changes. Where the service promises bitwise equality (the same request
twice, cached and uncached, concurrent and sequential), tests compare exactly instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np

FLOAT32_SCALE = 1e-4


def _array(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


def assert_float32_close(actual: Any, expected: Any, *, scale: float = FLOAT32_SCALE) -> None:
    """Assert `actual` equals `expected` up to float32 rounding of another summation order.

    Both sides must have the same shape. Each value may differ by `scale` of itself plus
    `scale` of the largest magnitude in `expected` (see the module docstring for why).
    """
    ours, theirs = _array(actual), _array(expected)
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    peak = float(np.abs(theirs).max()) if theirs.size else 0.0
    np.testing.assert_allclose(ours, theirs, rtol=scale, atol=scale * max(peak, 1e-30))
