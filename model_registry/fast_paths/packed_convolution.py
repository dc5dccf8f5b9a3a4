"""Faster convolutions on CPU for attribution passes: each layer's weights laid out once.

On every call, torch's CPU convolution has oneDNN reorder the layer's weights into its
blocked layout, and the activations into and out of it. A packed layer keeps its weights
reordered and calls oneDNN's inference convolution with them
(`torch.ops.mkldnn._convolution_pointwise`, the kernel torch.compile's CPU backend runs for
frozen weights). That kernel answers channels-last, and the next packed layer takes that as
it is; a layer on torch's kernel gets its input made contiguous first. `bench/convolution.py`
times networks both ways.

The values come from another oneDNN kernel, so they are not bitwise torch's: they agree to
float rounding (`bench/convolution.py` prints how far). That is why only the passes that
ask for it inside `packed_weights()` use it: the CAM methods' forward passes, whose maps
are compared by correlation. Feature maps, predictions and everything else keep torch's
kernel and its exact values. `LAYERSCOPE_PACK_CONVOLUTIONS=false` turns it off entirely.

Each layer checks its first call for every input shape against torch's kernel and keeps
torch's kernel for good if they differ by more than `RTOL` of the output's largest value;
from then on the packed kernel answers every call of that shape, so equal requests get
equal answers. Passes that record a gradient through the layer keep torch's kernel and its
backward. oneDNN lays weights out differently for one picture and for a batch, so a layer
keeps one reordered copy per input shape and batch kind, each as large as its weights.
Weights changed in place (a sanity check's randomization) are reordered again; a layer that
has reordered `MAX_REORDERS` times goes back to torch's kernel and frees its copies.
Whenever a layer or a whole model goes back to torch's kernel, one warning on the
`layerscope.models` logger names the model, the layer and why.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import types
from collections.abc import Iterator

import torch
from torch import nn

log = logging.getLogger("layerscope.models")

MAX_REORDERS = 8  # per layer; past this, shapes or weights change too often to gain
RTOL = 1e-4  # first-call check, relative to the layer output's largest magnitude

_PACKS = "_layerscope_packs"  # the instance attribute holding a layer's `_Packs`
_switch = threading.local()  # per thread: a pass on the device thread turns it on for itself


@contextlib.contextmanager
def packed_weights(enabled: bool = True) -> Iterator[None]:
    """Packed layers use their reordered weights in this thread while inside (when
    `enabled`), and torch's own kernel outside; the previous state is restored on exit."""
    before = getattr(_switch, "on", False)
    _switch.on = enabled
    try:
        yield
    finally:
        _switch.on = before


class _Packs:
    """One layer's reordered weights by input shape; a copied model starts without any.

    `model` and `layer` name the layer in warnings."""

    __slots__ = ("by_shape", "layer", "model", "off", "reorders", "weight")

    def __init__(self, model: str, layer: str) -> None:
        self.model, self.layer = model, layer
        self.by_shape: dict[tuple[int, ...], torch.Tensor] = {}
        self.weight: tuple[int, int] | None = None  # (data pointer, version) they came from
        self.reorders = 0
        self.off = False

    def __deepcopy__(self, memo: dict[int, object]) -> _Packs:
        return _Packs(self.model, self.layer)


def speed_up_convolutions(module: nn.Module, *, model: str = "model") -> int:
    """Give every plain zero-padded `nn.Conv2d` in `module` the packed-weight inference path.

    Subclasses (timm's `Conv2dSame`, weight-standardized convolutions) and layers with
    `padding="same"` or non-zero padding modes keep their forward. Like the max pooling
    path, the override is an attribute of each instance: module types, names, parameters
    and hooks are unchanged. `model` names the model in warnings. Returns the number of
    layers changed.
    """
    if not torch.backends.mkldnn.is_available():
        return 0
    changed = 0
    for name, sub in module.named_modules():
        if (
            type(sub) is nn.Conv2d
            and "forward" not in vars(sub)
            and sub.padding_mode == "zeros"
            and not isinstance(sub.padding, str)
        ):
            vars(sub)[_PACKS] = _Packs(
                model, name
            )  # plain attributes of the instance, as `setattr` would
            vars(sub)["forward"] = types.MethodType(_packed_forward, sub)
            changed += 1
    return changed


def packed_layers(module: nn.Module) -> list[nn.Module]:
    """The layers of `module` that `speed_up_convolutions` changed."""
    return [sub for sub in module.modules() if _PACKS in vars(sub)]


def remove_packing(module: nn.Module) -> None:
    """Every layer of `module` back to torch's own convolution."""
    for layer in packed_layers(module):
        del vars(layer)["forward"], vars(layer)[_PACKS]


def _packed_forward(self: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    if not getattr(_switch, "on", False):
        return nn.Conv2d.forward(self, x)  # torch's kernel on the model's own input, exactly
    packs: _Packs = vars(self)[_PACKS]
    weight, bias = self.weight, self.bias
    if (
        packs.off
        or x.layout is not torch.strided
        or x.device.type != "cpu"
        or x.dtype is not torch.float32
        or weight.dtype is not torch.float32
        or (bias is not None and bias.dtype is not torch.float32)
        or x.dim() != 4
        or not (x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last))
        or (
            torch.is_grad_enabled()
            and (
                x.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad)
            )
        )
    ):
        return nn.Conv2d.forward(self, _channels_first(x, weight))
    source = (weight.data_ptr(), weight._version)
    if packs.weight != source:
        packs.by_shape.clear()
        packs.weight = source
    shape = (min(x.shape[0], 2), *x.shape[1:])  # one picture, or a batch of any size
    packed = packs.by_shape.get(shape)
    if packed is not None:
        return _convolve(self, x, packed)
    expected = nn.Conv2d.forward(self, _channels_first(x, weight))
    if packs.reorders >= MAX_REORDERS:
        _give_up(packs, f"its weights or input shapes changed more than {MAX_REORDERS} times")
        return expected
    packs.reorders += 1
    try:
        # The stub lacks the last argument, the input's shape (the layout depends on it).
        packed = torch._C._nn.mkldnn_reorder_conv2d_weight(  # type: ignore[call-arg]
            weight.detach().to_mkldnn(),
            list(self.padding),
            list(self.stride),
            list(self.dilation),
            self.groups,
            list(x.shape),
        )
        fast = _convolve(self, x, packed)
    except RuntimeError as exc:  # a configuration this oneDNN build does not take
        _give_up(packs, f"oneDNN refused the layer ({exc})")
        return expected
    if not agrees(fast, expected):
        _give_up(packs, f"its output differs from torch's kernel's by more than {RTOL:g}")
        return expected
    packs.by_shape[shape] = packed
    return fast  # the packed kernel's answer from the first call on: equal calls, equal answers


def _channels_first(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """`x` as torch's kernel runs fastest: a packed layer's channels-last output is made
    contiguous again (torch's kernel with channels-last input and channels-first weights
    ran resnet18 at twice the time), unless the weights themselves are channels-last."""
    if (
        x.dim() == 4
        and x.layout is torch.strided
        and not x.is_contiguous()
        and x.is_contiguous(memory_format=torch.channels_last)
        and weight.is_contiguous()
    ):
        return x.contiguous()
    return x


def _convolve(layer: nn.Conv2d, x: torch.Tensor, packed: torch.Tensor) -> torch.Tensor:
    return torch.ops.mkldnn._convolution_pointwise(
        x,
        packed,
        layer.bias,
        list(layer.padding),
        list(layer.stride),
        list(layer.dilation),
        layer.groups,
        "none",
        [],
        "",
    )


def agrees(fast: torch.Tensor, expected: torch.Tensor, *, rtol: float = RTOL) -> bool:
    """Equal up to `rtol` of the largest finite magnitude of `expected`."""
    if fast.shape != expected.shape or fast.dtype != expected.dtype:
        return False
    if not expected.is_floating_point():
        return torch.equal(fast, expected)
    finite = expected.nan_to_num(0.0, 0.0, 0.0)
    scale = float(finite.abs().max()) if finite.numel() else 0.0
    return torch.allclose(fast, expected, rtol=0.0, atol=rtol * scale, equal_nan=True)


def _give_up(packs: _Packs, why: str) -> None:
    log.warning(
        "packed convolutions off for model '%s', layer '%s': %s", packs.model, packs.layer, why
    )
    packs.off = True
    packs.by_shape.clear()
