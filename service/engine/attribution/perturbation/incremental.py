"""Incremental inference: the model's outputs on perturbed copies of one picture, computing
the early layers only where the copies differ from it.

Krypton (Nakandala et al. 2019, https://arxiv.org/abs/1904.00085). A copy differs from the
clean picture only inside its box, so a node before the cut (`incremental_graph.plan`) is
computed on one crop per copy: read from the node's clean activation, with the crops of its
inputs pasted over it, then run through the node without padding (the clean map is padded
with zeros, or -inf for max pooling, instead). All copies of a batch share one crop size per
node, shifted inside the map at its edges. At the cut the crops are pasted into copies of the
clean activations, and the suffix GraphModule runs the rest of the network whole.

Models fx cannot trace, nodes it cannot do on crops, hooks, training mode or an input that
is not one 4-D picture: `module(perturbed)`, the same values.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.nn.modules import module as module_globals

from service.engine.attribution.perturbation.incremental_graph import (
    MAX_AREA,
    MIN_SAVING,
    Plan,
    Traced,
    Window,
    mutates,
    plan,
    traced,
)

log = logging.getLogger("layerscope.engine")

Box = tuple[int, int, int, int]  # y0, y1, x0, x1 in pixels, ends excluded
_OUT_OF_PLACE = {operator.iadd: operator.add, operator.imul: operator.mul}
_OUT_OF_PLACE[operator.isub] = operator.sub


@dataclass(frozen=True)
class _Crops:
    values: torch.Tensor  # [N, C, h, w]: every copy's crop of the node's output
    ys: Sequence[int]  # each crop's top row and left column in the node's map
    xs: Sequence[int]
    boxes: list[Box]  # each copy's changed cells, inside its crop


def mask_boxes(masks: torch.Tensor) -> list[Box]:
    """The bounding box of each mask of [n, H, W] (the whole picture for an empty one)."""
    rows, cols = masks.any(dim=2), masks.any(dim=1)
    height, width = masks.shape[-2:]
    boxes = []
    for row, col in zip(rows.tolist(), cols.tolist(), strict=True):
        if True not in row:
            boxes.append((0, height, 0, width))
            continue
        y0, x0 = row.index(True), col.index(True)
        y1, x1 = height - row[::-1].index(True), width - col[::-1].index(True)
        boxes.append((y0, y1, x0, x1))
    return boxes


def _hooked(module: nn.Module) -> bool:
    if module_globals._global_forward_hooks or module_globals._global_forward_pre_hooks:
        return True
    return any(m._forward_hooks or m._forward_pre_hooks for m in module.modules())


class _Recorder(fx.Interpreter):
    """Runs the traced graph keeping every node's value; a node that changes its input in
    place works on a copy, so the value kept for its input stays as it was."""

    def run_node(self, n: fx.Node) -> Any:
        if not mutates(n, self.submodules):
            return super().run_node(n)
        args, kwargs = self.fetch_args_kwargs_from_env(n)
        return getattr(self, n.op)(n.target, (args[0].clone(), *args[1:]), kwargs)


def _spans(lows: list[int], highs: list[int], limit: int) -> tuple[list[int], int]:
    """One crop length for all copies (the longest span, within the map) and each copy's
    crop start: its span's start, moved back where the crop would leave the map."""
    size = max(1, min(limit, max(h - lo for lo, h in zip(lows, highs, strict=True))))
    return [min(max(lo, 0), limit - size) for lo in lows], size


def _place(boxes: list[Box], shape: torch.Size) -> list[tuple[list[int], int]]:
    """(starts, length) of the copies' crops along rows, then along columns."""
    return [
        _spans([b[2 * axis] for b in boxes], [b[2 * axis + 1] for b in boxes], shape[2 + axis])
        for axis in (0, 1)
    ]


def _reached(low: int, high: int, kind: Window, axis: int, limit: int) -> tuple[int, int]:
    """The output cells [lo, hi) whose window, input cells o * stride - padding + [0, reach],
    meets the changed input cells [low, high)."""
    stride, pad = kind.stride[axis], kind.padding[axis]
    reach = (kind.kernel[axis] - 1) * kind.dilation[axis]
    lo = min(limit, max(0, -((reach - low - pad) // stride)))  # ceil((low + pad - reach) / s)
    return lo, max(lo, min(limit, (high - 1 + pad) // stride + 1))


def _union(boxes: Sequence[Box]) -> Box:
    return (
        min(b[0] for b in boxes),
        max(b[1] for b in boxes),
        min(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


class IncrementalForward:
    """`module(perturbed)` for copies of the picture `x` [1, C, H, W] that differ from it only
    inside given boxes, computed incrementally where that saves work (see the module doc)."""

    def __init__(
        self,
        module: nn.Module,
        x: torch.Tensor,
        *,
        max_area: float = MAX_AREA,
        min_saving: float = MIN_SAVING,
    ) -> None:
        self.module, self.x = module, x
        self.limits = {"max_area": max_area, "min_saving": min_saving}
        self.incremental = 0  # batches computed incrementally so far
        self.found: Traced | None = None
        if x.ndim == 4 and x.shape[0] == 1 and not any(m.training for m in module.modules()):
            self.found = traced(module)
        self.clean: dict[fx.Node, torch.Tensor] = {}
        self.shapes: dict[fx.Node, torch.Size] = {}
        self.padded: dict[tuple[fx.Node, float], tuple[int, torch.Tensor]] = {}

    def __call__(self, perturbed: torch.Tensor, boxes: list[Box]) -> Any:
        """The model's output on `perturbed` [N, C, H, W]; copy i equals x outside boxes[i]."""
        chosen = self._plan(perturbed, boxes)
        if chosen is None:
            return self.module(perturbed)
        self.incremental += 1
        state: dict[fx.Node, _Crops] = {}
        for node in chosen.nodes:
            state[node] = self._node(chosen.kinds, node, state, perturbed, boxes)
        cut = [perturbed if n.op == "placeholder" else self._whole(n, state[n]) for n in chosen.cut]
        return chosen.suffix(*cut)

    def _plan(self, perturbed: torch.Tensor, boxes: list[Box]) -> Plan | None:
        if self.found is None or perturbed.ndim != 4 or perturbed.shape[1:] != self.x.shape[1:]:
            return None
        height = max(b[1] - b[0] for b in boxes)
        width = max(b[3] - b[2] for b in boxes)
        if height * width > self.limits["max_area"] * perturbed.shape[-2] * perturbed.shape[-1]:
            return None
        if _hooked(self.module):
            log.debug("incremental inference off: the model has hooks")
            return None
        if not self.shapes:
            self._record(self.found)
        return plan(self.module, self.found, self.shapes, (height, width), **self.limits)

    def _record(self, found: Traced) -> None:
        recorder = _Recorder(found.graph, garbage_collect_values=False)
        recorder.run(self.x)
        keep = set(found.kinds) | {n for n in recorder.env if n.op == "placeholder"}
        self.shapes = {n: v.shape for n, v in recorder.env.items() if isinstance(v, torch.Tensor)}
        self.clean = {n: recorder.env[n] for n in keep if n in self.shapes}

    def _node(
        self,
        kinds: dict[fx.Node, Any],
        node: fx.Node,
        state: dict[fx.Node, _Crops],
        perturbed: torch.Tensor,
        boxes: list[Box],
    ) -> _Crops:
        shape = self.shapes[node]
        if node.op == "placeholder":
            (ys, h), (xs, w) = _place(boxes, shape)
            crops = [p[:, y : y + h, x : x + w] for p, y, x in zip(perturbed, ys, xs, strict=True)]
            return _Crops(torch.stack(crops), ys, xs, boxes)
        kind, first = kinds[node], cast(fx.Node, node.args[0])
        if isinstance(kind, Window):
            return self._window(node, kind, state[first])
        if kind == "unary":
            source = state[first]
            return _Crops(self._unary(node, source.values), source.ys, source.xs, source.boxes)
        inputs = [state[a].boxes for a in node.args if isinstance(a, fx.Node)]
        boxes = [_union(copy) for copy in zip(*inputs, strict=True)]
        (ys, xs), (h, w) = zip(*_place(boxes, shape), strict=True)
        args = [
            self._read(a, state[a], ys, xs, (h, w), 0.0) if isinstance(a, fx.Node) else a
            for a in node.args
        ]
        if node.op == "call_method":
            name = cast(str, node.target).rstrip("_")
            return _Crops(getattr(args[0], name)(*args[1:]), ys, xs, boxes)
        function = cast(Callable[..., torch.Tensor], node.target)
        return _Crops(_OUT_OF_PLACE.get(function, function)(*args), ys, xs, boxes)

    def _unary(self, node: fx.Node, values: torch.Tensor) -> torch.Tensor:
        """The node on `values`, which it may change in place: `traced` turns models off
        where an in-place node's input has other users."""
        if node.op == "call_module":
            return self.module.get_submodule(cast(str, node.target))(values)
        if node.op == "call_method":
            return getattr(values, cast(str, node.target))(*node.args[1:])
        return cast(Callable[..., torch.Tensor], node.target)(values, *node.args[1:], **node.kwargs)

    def _window(self, node: fx.Node, kind: Window, source: _Crops) -> _Crops:
        limits = self.shapes[node][2:]
        boxes = [
            (*_reached(b[0], b[1], kind, 0, limits[0]), *_reached(b[2], b[3], kind, 1, limits[1]))
            for b in source.boxes
        ]
        (ys, h), (xs, w) = _place(boxes, self.shapes[node])
        # crop cells c .. c + size - 1 read input cells c * stride - padding on, `span` of them
        span = [(n - 1) * s + (k - 1) * d + 1 for n, s, k, d in zip(
            (h, w), kind.stride, kind.kernel, kind.dilation, strict=True
        )]  # fmt: skip
        wys = [y * kind.stride[0] - kind.padding[0] for y in ys]
        wxs = [x * kind.stride[1] - kind.padding[1] for x in xs]
        window = self._read(
            cast(fx.Node, node.args[0]), source, wys, wxs, (span[0], span[1]), kind.fill
        )
        return _Crops(kind.run(window), ys, xs, boxes)

    def _read(
        self,
        node: fx.Node,
        crops: _Crops,
        ys: Sequence[int],
        xs: Sequence[int],
        size: tuple[int, int],
        fill: float,
    ) -> torch.Tensor:
        """[N, C, h, w]: each copy's window at (ys[i], xs[i]) of the node's output, which may
        reach past the map (filled with `fill`): clean values with the crop pasted over them."""
        values, (h, w) = crops.values, size
        if list(crops.ys) == list(ys) and list(crops.xs) == list(xs) and values.shape[-2:] == size:
            return values
        clean = self.clean[node]
        height, width = clean.shape[-2:]
        need = max(0, -min(ys), -min(xs), max(ys) + h - height, max(xs) + w - width)
        margin, padded = self.padded.get((node, fill), (-1, clean))
        if margin < need:
            margin = need
            padded = F.pad(clean, (margin,) * 4, value=fill) if need else clean
            padded = padded.contiguous(memory_format=torch.channels_last)
            self.padded[(node, fill)] = (margin, padded)
        out = torch.empty(
            (len(ys), clean.shape[1], h, w), dtype=values.dtype, device=values.device,
            memory_format=torch.channels_last,
        )  # fmt: skip
        ch, cw = values.shape[-2:]
        for i, (y, x, cy, cx) in enumerate(zip(ys, xs, crops.ys, crops.xs, strict=True)):
            out[i].copy_(padded[0, :, y + margin : y + margin + h, x + margin : x + margin + w])
            y0, y1, x0, x1 = max(y, cy), min(y + h, cy + ch), max(x, cx), min(x + w, cx + cw)
            if y0 < y1 and x0 < x1:
                out[i, :, y0 - y : y1 - y, x0 - x : x1 - x].copy_(
                    values[i, :, y0 - cy : y1 - cy, x0 - cx : x1 - cx]
                )
        return out

    def _whole(self, node: fx.Node, crops: _Crops) -> torch.Tensor:
        """Copies of the node's clean tensor with each copy's crop pasted in."""
        clean = self.clean[node]
        out = clean.expand(len(crops.ys), -1, -1, -1).contiguous(memory_format=torch.channels_last)
        h, w = crops.values.shape[-2:]
        for i, (y, x) in enumerate(zip(crops.ys, crops.xs, strict=True)):
            out[i, :, y : y + h, x : x + w].copy_(crops.values[i])
        return out
