"""The theoretical receptive field of every position of a layer's map, in model-input pixels.

The field is followed through the operations that actually run, not read from module
names: one forward pass of one blank picture under a `TorchFunctionMode` gives every
tensor with a spatial map a per-axis interval table, `lo[i]..hi[i]` (inclusive input
pixels) for each row i and, separately, each column. Convolutions and poolings widen it
from their kernel size, stride, padding and dilation, by the closed form's arithmetic
(unclipped; clipped to the input once, at the end); ops that keep the spatial size (batch
norm, activations, additions, concatenation along channels) take the union of their
inputs' fields, so a residual block's field is its longest path (Araujo et al., "Computing
Receptive Fields of Convolutional Neural Networks", Distill 2019). Adaptive poolings use their bins.

Where the map cannot be followed (a ViT's token sequence, Swin's channels-last stages,
anything reshaped on the way), `grid_cells` stands in: each map position covers the input
cell it stands for, input size divided by the grid. For a ViT that is exactly the patch its
patch-embedding convolution reads (kernel = stride = patch size); after the first
attention block the theoretical field of a token is the whole picture, so the cell says
where the token sits, not all it sees (docs/units.md).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

from model_registry.layout import CHANNELS_FIRST
from model_registry.registry import LoadedModel
from service.engine.capture import StopForward, hooked


@dataclass(frozen=True)
class Field:
    """Per-axis input intervals of a map: rows [H, 2] and cols [W, 2], inclusive pixels.

    Attributes:
        rows: int64 [H, 2], the first and last input row each map row sees.
        cols: int64 [W, 2], the same for columns.
        derived: True when followed through the network's operations; False for the
            grid-cell stand-in.
    """

    rows: np.ndarray
    cols: np.ndarray
    derived: bool

    def box(self, y: int, x: int) -> tuple[int, int, int, int]:
        """[x0, y0, x1, y1] of map position (y, x): x1 and y1 exclusive, as Pillow's crop."""
        return (
            int(self.cols[x, 0]),
            int(self.rows[y, 0]),
            int(self.cols[x, 1]) + 1,
            int(self.rows[y, 1]) + 1,
        )


def identity(size: int) -> np.ndarray:
    """The field of the input itself: pixel i sees pixel i."""
    steps = np.arange(size, dtype=np.int64)
    return np.stack([steps, steps], axis=1)


def window(
    field: np.ndarray, out: int, *, kernel: int, stride: int, padding: int, dilation: int
) -> np.ndarray:
    """The field after a sliding window along one axis: the union of what its taps see.

    Fields are kept unclipped (the closed form's arithmetic), and a tap in the padding sees
    what a position there would: the field extended past the edge by its step. Clipping to
    the input happens once, at the end (`receptive_field`)."""
    size = len(field)
    step = field[1] - field[0] if size > 1 else np.zeros(2, dtype=np.int64)
    taps = np.arange(out)[:, None] * stride - padding + np.arange(kernel)[None, :] * dilation
    inside = taps.clip(0, size - 1)
    seen = field[inside] + (taps - inside)[..., None] * step
    return np.stack([seen[..., 0].min(axis=1), seen[..., 1].max(axis=1)], axis=1)


def adaptive(field: np.ndarray, out: int) -> np.ndarray:
    """Adaptive pooling's bins: [floor(i * n / out), ceil((i + 1) * n / out))."""
    size = len(field)
    result = np.empty((out, 2), dtype=np.int64)
    for i in range(out):
        start, stop = (i * size) // out, -(-((i + 1) * size) // out)
        result[i] = (field[start:stop, 0].min(), field[start:stop, 1].max())
    return result


def grid_cells(size: int, cells: int) -> np.ndarray:
    """The stand-in field: map position i covers the i-th of `cells` equal input cells."""
    return adaptive(identity(size), cells)


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, list | tuple):
        return (int(value[0]), int(value[-1]))
    return (int(value), int(value))


def _arg(args: tuple, kwargs: dict, position: int, name: str, default: Any) -> Any:
    if name in kwargs:
        return kwargs[name]
    return args[position] if len(args) > position else default


Axes = tuple[np.ndarray, np.ndarray]
Rule = Callable[[tuple, dict, Axes, tuple[int, int]], Axes]


def _conv(args: tuple, kwargs: dict, fields: Axes, out: tuple[int, int]) -> Axes:
    weight = _arg(args, kwargs, 1, "weight", None)
    kernel = tuple(weight.shape[-2:])
    stride = _pair(_arg(args, kwargs, 3, "stride", 1))
    padding = _arg(args, kwargs, 4, "padding", 0)
    dilation = _pair(_arg(args, kwargs, 5, "dilation", 1))
    if isinstance(padding, str):  # 'same' pads (d * (k - 1)) // 2 before; 'valid' none
        same = padding == "same"
        padding = tuple(
            d * (k - 1) // 2 if same else 0 for k, d in zip(kernel, dilation, strict=True)
        )
    padding = _pair(padding)
    return tuple(  # type: ignore[return-value]
        window(f, o, kernel=k, stride=s, padding=p, dilation=d)
        for f, o, k, s, p, d in zip(fields, out, kernel, stride, padding, dilation, strict=True)
    )


def _pooling(*, dilated: bool) -> Rule:
    """max_pool2d (input, kernel_size, stride, padding, dilation) or avg_pool2d (no
    dilation); a stride left out is the kernel size."""

    def rule(args: tuple, kwargs: dict, fields: Axes, out: tuple[int, int]) -> Axes:
        kernel = _pair(_arg(args, kwargs, 1, "kernel_size", 1))
        stride_value = _arg(args, kwargs, 2, "stride", None)
        stride = kernel if stride_value in (None, [], ()) else _pair(stride_value)
        padding = _pair(_arg(args, kwargs, 3, "padding", 0))
        dilation = _pair(_arg(args, kwargs, 4, "dilation", 1)) if dilated else (1, 1)
        return tuple(  # type: ignore[return-value]
            window(f, o, kernel=k, stride=s, padding=p, dilation=d)
            for f, o, k, s, p, d in zip(fields, out, kernel, stride, padding, dilation, strict=True)
        )

    return rule


def _adaptive(_args: tuple, _kwargs: dict, fields: Axes, out: tuple[int, int]) -> Axes:
    return (adaptive(fields[0], out[0]), adaptive(fields[1], out[1]))


# Operations that move along the spatial axes, by the name torch gives them.
SPATIAL: dict[str, Rule] = {
    "conv2d": _conv,
    "max_pool2d": _pooling(dilated=True),
    "max_pool2d_with_indices": _pooling(dilated=True),
    "_max_pool2d": _pooling(dilated=True),
    "avg_pool2d": _pooling(dilated=False),
    "adaptive_avg_pool2d": _adaptive,
    "adaptive_max_pool2d": _adaptive,
    "adaptive_max_pool2d_with_indices": _adaptive,
}
# Operations that keep a [B, C, H, W] shape but move values between positions or axes: what
# comes out of them is not followed.
MOVING = frozenset(
    {"permute", "transpose", "transpose_", "view", "reshape", "flip", "roll", "rot90"}
    | {"movedim", "swapaxes", "swapdims", "linear", "matmul", "einsum", "conv_transpose2d"}
    | {"interpolate", "upsample", "grid_sample", "pad", "unfold", "fold", "pixel_shuffle"}
)


class _Tracker(TorchFunctionMode):
    """Keeps a field for every [B, C, H, W] tensor the forward pass makes (tensors are held
    for the pass, so their ids stay theirs)."""

    def __init__(self, start: torch.Tensor) -> None:
        super().__init__()
        height, width = start.shape[-2:]
        self.fields: dict[int, Axes] = {id(start): (identity(height), identity(width))}
        self.kept: list[torch.Tensor] = [start]

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        output = func(*args, **kwargs)
        result = output[0] if isinstance(output, tuple) and output else output
        if isinstance(result, torch.Tensor) and result.ndim == 4:
            field = self._follow(getattr(func, "__name__", ""), args, kwargs, result)
            if field is None:
                self.fields.pop(id(result), None)
            else:
                self.fields[id(result)] = field
                self.kept.append(result)
        return output

    def _follow(self, name: str, args: tuple, kwargs: dict, result: torch.Tensor) -> Axes | None:
        inputs = [
            self.fields[id(t)]
            for t in tree_flatten((args, kwargs))[0]
            if isinstance(t, torch.Tensor) and id(t) in self.fields
        ]
        if not inputs or name.lstrip("_").rstrip("_") in MOVING:
            return None
        out = (int(result.shape[-2]), int(result.shape[-1]))
        rule = SPATIAL.get(name)
        if rule is not None:
            return rule(args, kwargs, inputs[0], out)
        fields = []
        for axis, size in enumerate(out):
            tables = [f[axis] for f in inputs if len(f[axis]) in (1, size)]
            if len(tables) != len(inputs):
                return None
            tables = [np.repeat(t, size, axis=0) if len(t) == 1 else t for t in tables]
            stacked = np.stack(tables)
            fields.append(np.stack([stacked[:, :, 0].min(0), stacked[:, :, 1].max(0)], axis=1))
        return (fields[0], fields[1])


def receptive_field(model: LoadedModel, layer: str) -> Field:
    """The field of every position of `layer`'s map (the catalog's map layout), from one
    forward pass of a blank picture at the model's input size; the grid-cell stand-in
    where the layer's output is not a followed [B, C, H, W] map."""
    info = model.catalog.get(layer, field="layer")
    layout = info.map_layout
    if layout is None:
        raise ValueError(f"layer {layer!r} has no map")
    height, width = model.spec.input_size
    found: list[Axes | None] = []
    seen = [0]

    def hook(_module: Any, _inputs: Any, output: Any) -> None:
        seen[0] += 1
        if seen[0] % info.calls == 0:
            found.append(tracker.fields.get(id(output)))
            raise StopForward

    start = torch.zeros(1, model.spec.in_channels, height, width, device=model.device)
    tracker = _Tracker(start)
    with (
        torch.inference_mode(),
        hooked(model.module, {layer: hook}),
        contextlib.suppress(StopForward),
        tracker,
    ):
        model.module(start)
    axes = found[0] if found else None
    shape_ok = axes is not None and (len(axes[0]), len(axes[1])) == (layout.height, layout.width)
    if layout.kind == CHANNELS_FIRST and shape_ok and axes is not None:
        return Field(axes[0].clip(0, height - 1), axes[1].clip(0, width - 1), derived=True)
    return Field(grid_cells(height, layout.height), grid_cells(width, layout.width), derived=False)
