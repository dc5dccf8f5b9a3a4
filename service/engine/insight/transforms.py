"""Image parameterization and random transforms for feature visualization.

The recipe is the one of Olah et al., "Feature Visualization" (Distill 2017,
https://distill.pub/2017/feature-visualization/) and Lucid: optimize a Fourier spectrum
whose frequencies are scaled by 1/f (so all frequencies learn at a similar rate and the
image is not dominated by high-frequency noise), map colours through the square root of the
ImageNet colour correlation (decorrelated colour space), squash with a sigmoid into [0, 1],
and show the network a randomly jittered, scaled and rotated copy at every step so that
only features robust to small transforms survive.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

# Square root of ImageNet's RGB colour covariance (Lucid, `param/color.py`), columns
# normalized so that the largest has unit length.
_COLOR_SQRT = np.array(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=np.float32
)
COLOR_DECORRELATION = _COLOR_SQRT / np.max(np.linalg.norm(_COLOR_SQRT, axis=0))


class FourierImage:
    """A [1, C, H, W] image in [0, 1] parameterized by a scaled Fourier spectrum.

    `spectrum` is the only tensor that needs gradients; the model never sees it directly.
    """

    def __init__(
        self,
        channels: int,
        size: tuple[int, int],
        *,
        generator: torch.Generator,
        device: torch.device,
        decorrelate: bool = True,
        noise: float = 1.0,
        decay: float = 1.0,
    ) -> None:
        height, width = size
        fy = np.fft.fftfreq(height)[:, None]
        fx = np.fft.rfftfreq(width)[None, :]
        freqs = np.sqrt(fx * fx + fy * fy)
        scale = 1.0 / np.maximum(freqs, 1.0 / max(height, width)) ** decay
        self.size = size
        self.channels = channels
        self.scale = torch.tensor(scale, dtype=torch.float32, device=device)
        # Start from white noise (std `noise` before the sigmoid) rather than Lucid's
        # near-uniform grey: on grey, a ReLU channel that is off everywhere has no gradient
        # and never wakes up, while noise switches nearly every channel on somewhere.
        # Drawn on the CPU generator so the same seed gives the same start on any device.
        start = torch.randn((channels, height, width), generator=generator) * (4.0 * noise)
        spectrum = torch.fft.rfft2(start, norm="ortho") / self.scale.cpu()
        self.spectrum = torch.stack([spectrum.real, spectrum.imag]).to(device).requires_grad_(True)
        self.color = (
            torch.tensor(COLOR_DECORRELATION, device=device)
            if decorrelate and channels == 3
            else None
        )

    def pixels(self) -> torch.Tensor:
        """The image in [0, 1], [1, C, H, W]; differentiable w.r.t. `spectrum`."""
        spectrum = torch.complex(self.spectrum[0], self.spectrum[1]) * self.scale
        # 'ortho' matches Lucid's sqrt(H*W) scaling: a unitary transform, so pixel-space
        # learning rates carry over; /4 is Lucid's constant too.
        image = torch.fft.irfft2(spectrum, s=self.size, norm="ortho")[None] / 4.0
        if self.color is not None:
            image = torch.einsum("dc,bchw->bdhw", self.color, image)
        return torch.sigmoid(image)


@dataclass(frozen=True)
class TransformOptions:
    """Random robustness transforms, sizes relative to a 224-pixel image as in Lucid.

    Attributes:
        jitter: largest translation as a fraction of the image side (Lucid: 8 / 224 + 4 / 224).
        scales: zoom factors to draw from (Lucid: 0.9 .. 1.1).
        angles: rotation angles in degrees to draw from (Lucid: -10 .. 10, 0 more often).
    """

    jitter: float = 12 / 224
    scales: tuple[float, ...] = tuple(1 + (i - 5) / 50 for i in range(11))
    angles: tuple[float, ...] = tuple(float(a) for a in range(-10, 11)) + (0.0,) * 5


def random_transform(
    image: torch.Tensor, generator: torch.Generator, options: TransformOptions
) -> torch.Tensor:
    """One random translation + zoom + rotation of a [B, C, H, W] image in [0, 1].

    Everything is one `grid_sample`, so the output keeps the input size (models that flatten
    a fixed-size map keep working) and what enters from outside is mid-grey, as Lucid's
    constant 0.5 padding.
    """
    _, _, height, width = image.shape
    reach = max(1, round(options.jitter * max(height, width)))
    dx, dy = (int(v) for v in torch.randint(-reach, reach + 1, (2,), generator=generator))
    scale = options.scales[int(torch.randint(len(options.scales), (1,), generator=generator))]
    angle = math.radians(
        options.angles[int(torch.randint(len(options.angles), (1,), generator=generator))]
    )
    cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
    theta = torch.tensor(
        [
            [cos, -sin * height / width, 2 * dx / width],
            [sin * width / height, cos, 2 * dy / height],
        ],
        dtype=image.dtype,
        device=image.device,
    )[None].expand(image.shape[0], -1, -1)
    grid = F.affine_grid(theta, list(image.shape), align_corners=False)
    return (
        F.grid_sample(image - 0.5, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        + 0.5
    )


def total_variation(image: torch.Tensor, *, beta: float = 2.0) -> torch.Tensor:
    """Mean of (dx^2 + dy^2)^(beta/2) over positions (Mahendran & Vedaldi 2015, eq. 5)."""
    dx = image[..., :-1, 1:] - image[..., :-1, :-1]
    dy = image[..., 1:, :-1] - image[..., :-1, :-1]
    squared = dx * dx + dy * dy
    if beta == 2.0:
        return squared.mean()
    return (squared + 1e-8).pow(beta / 2).mean()


def normalize(
    pixels: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]
) -> torch.Tensor:
    """[0, 1] pixels -> the model's normalized input."""
    m = torch.tensor(mean, device=pixels.device, dtype=pixels.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, device=pixels.device, dtype=pixels.dtype).view(1, -1, 1, 1)
    return (pixels - m) / s
