"""The graph side of incremental inference: trace a model once, say which of its nodes can
be computed on a crop, and cut it where the changed region grows too large.

Krypton (Nakandala et al. 2019, https://arxiv.org/abs/1904.00085): a perturbed copy of a
picture differs from it only inside a box, so an early layer changes only where its
receptive field meets that box. `plan` keeps the nodes that are sliding windows (Conv2d,
max/avg pooling) or elementwise (BatchNorm2d in eval, activations, add/mul of two maps)
while their changed crop stays under `MAX_AREA` of their map; the rest of the graph becomes
one `GraphModule` (the suffix) that takes the cut's tensors and runs at native speed.
"""

from __future__ import annotations

import logging
import math
import operator
import threading
import weakref
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

log = logging.getLogger("layerscope.engine")

MAX_AREA = 0.5  # a node whose crop covers more of its map is computed whole (the cut)
MIN_SAVING = 0.2  # share of the convolution work a plan must save to be used
MAX_PLANS = 64  # per model: (input size, box size, limits) -> plan

_UNARY_MODULES: set[type[nn.Module]] = {nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU}
_UNARY_MODULES |= {nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid}
_UNARY_MODULES |= {nn.Hardtanh, nn.Mish, nn.Identity, nn.Dropout, nn.Dropout2d}
_UNARY_FUNCTIONS = {torch.relu, F.relu, F.relu6, torch.sigmoid, torch.tanh, F.gelu, F.silu}
_UNARY_FUNCTIONS |= {F.hardswish, F.leaky_relu, F.hardtanh}
_UNARY_METHODS = {"relu", "relu_", "sigmoid", "tanh", "contiguous"}
_BINARY_FUNCTIONS = {operator.add, operator.mul, operator.sub, torch.add, torch.mul, torch.sub}
_BINARY_FUNCTIONS |= {operator.iadd, operator.imul, operator.isub}
_BINARY_METHODS = {"add", "mul", "sub", "add_", "mul_"}
IN_PLACE = {operator.iadd, operator.imul, operator.isub}


@dataclass(frozen=True)
class Window:
    """A sliding-window node, run on a window read with `fill` outside the map."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    fill: float
    run: Any  # Tensor -> Tensor, the node without its padding
    cost: int  # multiply-adds per output cell (0 for pooling)


@dataclass(frozen=True)
class Traced:
    graph: fx.GraphModule
    modules: tuple[int, ...]  # ids of the model's submodules when traced
    kinds: dict[fx.Node, Any]  # Window, "unary" or "binary" for the nodes done on crops


@dataclass(frozen=True)
class Plan:
    kinds: dict[fx.Node, Any]  # as Traced.kinds
    nodes: list[fx.Node]  # computed on crops, in order (the placeholder first)
    cut: list[fx.Node]  # the crop nodes whose whole tensors the suffix takes
    suffix: fx.GraphModule


class _OwnThreadTracer(fx.Tracer):
    """fx patches `nn.Module.__call__` and `__getattr__` for every thread while it traces;
    calls from other threads (the model is shared) go through untouched."""

    def __init__(self) -> None:
        super().__init__()
        self.owner = threading.get_ident()

    def call_module(self, m: nn.Module, forward: Any, args: Any, kwargs: Any) -> Any:
        if threading.get_ident() != self.owner:
            return forward(*args, **kwargs)
        return super().call_module(m, forward, args, kwargs)

    def getattr(self, attr: str, attr_val: Any, parameter_proxy_cache: dict) -> Any:
        if threading.get_ident() != self.owner:
            return attr_val
        return super().getattr(attr, attr_val, parameter_proxy_cache)


_traced: weakref.WeakKeyDictionary[nn.Module, Traced | None] = weakref.WeakKeyDictionary()
_plans: weakref.WeakKeyDictionary[nn.Module, dict[tuple, Plan | None]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def _pair(value: Any) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _window(module: nn.Module) -> Window | None:
    """Plain Conv2d (zero padding), MaxPool2d and AvgPool2d; subclasses keep their forward."""
    if isinstance(module, nn.Conv2d) and type(module) is nn.Conv2d:
        if module.padding_mode != "zeros" or isinstance(module.padding, str):
            return None
        conv = module

        def convolve(t: torch.Tensor) -> torch.Tensor:
            return F.conv2d(t, conv.weight, conv.bias, conv.stride, 0, conv.dilation, conv.groups)

        k, s = _pair(conv.kernel_size), _pair(conv.stride)
        cost = conv.in_channels // conv.groups * k[0] * k[1] * conv.out_channels
        return Window(k, s, _pair(conv.padding), _pair(conv.dilation), 0.0, convolve, cost)
    if isinstance(module, nn.MaxPool2d) and type(module) is nn.MaxPool2d:
        if module.return_indices:
            return None
        k, s, d = _pair(module.kernel_size), _pair(module.stride), _pair(module.dilation)

        def max_pool(t: torch.Tensor) -> torch.Tensor:
            return F.max_pool2d(t, k, s, 0, d)

        return Window(k, s, _pair(module.padding), d, -math.inf, max_pool, 0)
    if isinstance(module, nn.AvgPool2d) and type(module) is nn.AvgPool2d:
        padding = _pair(module.padding)
        if module.ceil_mode or module.divisor_override is not None:
            return None
        if not module.count_include_pad and padding != (0, 0):
            return None
        k, s = _pair(module.kernel_size), _pair(module.stride)

        def avg_pool(t: torch.Tensor) -> torch.Tensor:
            return F.avg_pool2d(t, k, s, 0)

        return Window(k, s, padding, (1, 1), 0.0, avg_pool, 0)
    return None


def _kind(node: fx.Node, modules: dict[str, nn.Module]) -> Any:
    """Window, "unary", "binary" or None (not done on crops)."""
    tensors = [a for a in node.args if isinstance(a, fx.Node)]
    if node.op == "call_module":
        module = modules[str(node.target)]
        if node.kwargs or len(node.args) != 1 or len(tensors) != 1:
            return None
        if isinstance(module, nn.BatchNorm2d):
            ok = type(module) is nn.BatchNorm2d and module.running_mean is not None
            return "unary" if ok and not module.training else None
        if type(module) in _UNARY_MODULES:
            return "unary"
        return _window(module)
    if node.op not in ("call_function", "call_method") or not tensors:
        return None
    if set(node.kwargs) - {"inplace"}:
        return None
    plain = all(isinstance(a, fx.Node | int | float) for a in node.args)
    unary = node.target in (_UNARY_FUNCTIONS if node.op == "call_function" else _UNARY_METHODS)
    binary = node.target in (_BINARY_FUNCTIONS if node.op == "call_function" else _BINARY_METHODS)
    if unary and plain and len(tensors) == 1 and node.args[0] is tensors[0]:
        return "unary" if node.target != "contiguous" or len(node.args) == 1 else None
    if binary and plain and len(node.args) == 2:
        return "binary"
    return None


def mutates(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    """Whether the node changes its first input in place."""
    if node.op == "call_module":
        return bool(getattr(modules[str(node.target)], "inplace", False))
    if node.op == "call_method":
        return str(node.target).endswith("_")
    if node.op == "call_function":
        name = getattr(node.target, "__name__", "")
        return node.target in IN_PLACE or bool(node.kwargs.get("inplace")) or name.endswith("_")
    return False


def _shared_input(node: fx.Node) -> bool:
    first = node.args[0] if node.args else None
    return isinstance(first, fx.Node) and len(first.users) > 1


def traced(model: nn.Module) -> Traced | None:
    """The model's fx graph and the nodes done on crops; None where fx cannot trace it.
    Traced once per model object, again if its submodules were replaced."""
    ids = tuple(id(m) for m in model.modules())
    with _lock:
        if model in _traced:
            found = _traced[model]
            if found is None or found.modules == ids:
                return found
        try:
            graph = fx.GraphModule(model, _OwnThreadTracer().trace(model))
        except Exception as exc:  # noqa: BLE001 - any tracing failure means: run it whole
            log.debug("incremental inference off for %s: %s", type(model).__name__, exc)
            _traced[model] = None
            return None
        modules = dict(graph.named_modules())
        shared = [n for n in graph.graph.nodes if mutates(n, modules) and _shared_input(n)]
        if shared:  # its other users read the changed values: aliasing, run it whole
            log.debug("incremental inference off: %s changes a shared input", shared[0])
            _traced[model] = None
            return None
        kinds = {n: k for n in graph.graph.nodes if (k := _kind(n, modules)) is not None}
        _traced[model] = result = Traced(graph, ids, kinds)
        _plans[model] = {}
        return result


def _grow(size: int, window: Window, axis: int, limit: int) -> int:
    """The most output cells a changed span of `size` input cells can reach."""
    reach = (window.kernel[axis] - 1) * window.dilation[axis]
    return min(limit, (size - 1 + reach) // window.stride[axis] + 1)


def plan(
    model: nn.Module,
    found: Traced,
    shapes: dict[fx.Node, torch.Size],
    box: tuple[int, int],
    *,
    max_area: float = MAX_AREA,
    min_saving: float = MIN_SAVING,
) -> Plan | None:
    """The nodes done on crops for changed boxes of up to `box` (h, w) input pixels and the
    suffix GraphModule; None when that would save under `min_saving` of the convolutions'
    work. A node whose crop would cover more than `max_area` of its map, and all after it,
    are computed whole. `shapes`: every node's output shape on the clean picture."""
    nodes_shapes = tuple(shapes[n] for n in found.graph.graph.nodes if n in shapes)
    key = (nodes_shapes, box, max_area, min_saving)
    with _lock:
        cache = _plans.setdefault(model, {})
        if key in cache:
            return cache[key]
    sizes: dict[fx.Node, tuple[int, int]] = {}
    nodes: list[fx.Node] = []
    total = saved = 0
    for node in found.graph.graph.nodes:
        shape, kind = shapes.get(node), found.kinds.get(node)
        if isinstance(kind, Window) and shape is not None and len(shape) == 4:
            total += kind.cost * shape[-1] * shape[-2]
        if node.op == "placeholder" and not nodes and shape is not None and len(shape) == 4:
            sizes[node] = (min(box[0], shape[-2]), min(box[1], shape[-1]))
            nodes.append(node)
            continue
        inputs = [a for a in node.args if isinstance(a, fx.Node)]
        if kind is None or shape is None or len(shape) != 4 or not inputs:
            continue
        if any(a not in sizes for a in inputs):
            continue
        if not isinstance(kind, Window) and any(shapes[a] != shape for a in inputs):
            continue  # broadcasting: computed whole
        h, w = shape[-2:]
        if isinstance(kind, Window):
            (ih, iw) = sizes[inputs[0]]
            size = (_grow(ih, kind, 0, h), _grow(iw, kind, 1, w))
        else:
            size = (max(sizes[a][0] for a in inputs), max(sizes[a][1] for a in inputs))
        if size[0] * size[1] > max_area * h * w:
            continue
        sizes[node] = size
        nodes.append(node)
        if isinstance(kind, Window):
            saved += kind.cost * (h * w - size[0] * size[1])
    chosen = _split(found, nodes) if nodes and total and saved >= min_saving * total else None
    with _lock:
        cache = _plans.setdefault(model, {})
        if len(cache) >= MAX_PLANS:  # SLIC parts come in many sizes: drop the oldest
            cache.pop(next(iter(cache)))
        cache[key] = chosen
    return chosen


def _split(found: Traced, nodes: list[fx.Node]) -> Plan | None:
    """The suffix: every node not in `nodes`, taking the cut nodes' tensors as inputs."""
    done = set(nodes)
    cut = [n for n in nodes if any(u not in done for u in n.users)]
    suffix = fx.Graph()
    env = {n: suffix.placeholder(f"cut_{n.name}") for n in cut}
    for node in found.graph.graph.nodes:
        if node in done:
            continue
        if node.op == "placeholder":
            return None  # a second input: computed whole
        env[node] = suffix.node_copy(node, lambda a: env[a])
    return Plan(found.kinds, nodes, cut, fx.GraphModule(found.graph, suffix))
