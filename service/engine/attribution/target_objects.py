"""What an attribution explains, as objects: a differentiable score per image and target.

A request (`ClassRequest`, `RegionRequest`, `BoxRequest`) is checked before any compute and
resolved against the model's first output into a `Target`. Every method takes the Target
and calls `scores(output, images)` on whatever forward pass it runs (a hooked pass, masked
or ablated copies, noisy or interpolated inputs), so a method never asks what the task is:

- `ClassTarget`: the class logit (pytorch-grad-cam's `ClassifierOutputTarget`, Captum's
  `target=`);
- `RegionTarget`: the sum of one class's scores over a region's pixels
  (pytorch-grad-cam's `SemanticSegmentationTarget`);
- `BoxTarget`: IoU + score of the detection that best overlaps a box, when it has the same
  label and IoU > 0.5, else 0 (pytorch-grad-cam's `FasterRCNNBoxScoreTarget`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Union

import torch
from torchvision.ops import box_iou

from model_registry.errors import InvalidInput
from service.engine.attribution.targets import resolve_targets
from service.engine.dense.outputs import class_scores, detections

if TYPE_CHECKING:
    from service.engine.attribution.unit_target import UnitRequest

IOU_THRESHOLD = 0.5


@dataclass(frozen=True)
class Target:
    """Resolved targets of a batch. `classes` int64 [B, T]: the class each target explains."""

    classes: torch.Tensor

    def scores(self, output: Any, images: torch.Tensor) -> torch.Tensor:
        """[R, T] scores of a model output for R inputs; input r is (a variant of) image
        `images[r]` of the batch the target was resolved on."""
        raise NotImplementedError

    def select(self, part: slice) -> Target:
        """The targets of images `part` (re-indexed from 0)."""
        raise NotImplementedError

    @property
    def count(self) -> int:
        return int(self.classes.shape[1])

    def boxes_drawn(self) -> torch.Tensor | None:
        """[B, T, 4] boxes to draw with the maps, in input pixels; None: none."""
        return None

    def regions_drawn(self) -> torch.Tensor | None:
        """bool [B, T, H, W] regions whose outline is drawn with the maps; None: none."""
        return None


@dataclass(frozen=True)
class ClassTarget(Target):
    def scores(self, output: Any, images: torch.Tensor) -> torch.Tensor:
        return output.gather(1, self.classes[images])

    def select(self, part: slice) -> ClassTarget:
        return ClassTarget(self.classes[part])


@dataclass(frozen=True)
class RegionTarget(Target):
    """`masks` float [B, T, H, W] at the input size: 1 inside the region."""

    masks: torch.Tensor

    def scores(self, output: Any, images: torch.Tensor) -> torch.Tensor:
        size = (self.masks.shape[-2], self.masks.shape[-1])
        logits = class_scores(output, size)
        index = self.classes[images][:, :, None, None].expand(-1, -1, *size)
        return (logits.gather(1, index) * self.masks[images].to(logits.dtype)).sum(dim=(2, 3))

    def select(self, part: slice) -> RegionTarget:
        return RegionTarget(self.classes[part], self.masks[part])

    def regions_drawn(self) -> torch.Tensor:
        return self.masks > 0.5


@dataclass(frozen=True)
class BoxTarget(Target):
    """`boxes` float [B, T, 4], [x0, y0, x1, y1] in the model input's pixels."""

    boxes: torch.Tensor

    def scores(self, output: Any, images: torch.Tensor) -> torch.Tensor:
        found = detections(output)
        rows = []
        for found_in, image in zip(found, images.tolist(), strict=True):
            rows.append(
                torch.stack(
                    [
                        box_score(found_in, self.boxes[image, t], int(self.classes[image, t]))
                        for t in range(self.count)
                    ]
                )
            )
        return torch.stack(rows)

    def select(self, part: slice) -> BoxTarget:
        return BoxTarget(self.classes[part], self.boxes[part])

    def boxes_drawn(self) -> torch.Tensor:
        return self.boxes


def box_score(found: Any, box: torch.Tensor, label: int) -> torch.Tensor:
    """FasterRCNNBoxScoreTarget for one box: the detection of highest IoU with `box`; its IoU
    plus its score when its label is `label` and the IoU exceeds 0.5, else 0."""
    boxes = found["boxes"]
    zero = torch.zeros((), dtype=torch.float32, device=box.device)
    if boxes.shape[0] == 0:
        return zero
    ious = box_iou(box[None].to(boxes.dtype), boxes)[0]
    best = int(ious.argmax())
    if float(ious[best].detach()) > IOU_THRESHOLD and int(found["labels"][best]) == label:
        return (ious[best] + found["scores"][best]).float()
    return zero


def concat_targets(parts: list[Target]) -> Target:
    """Targets of consecutive chunks of a batch as one (every field joined along images)."""
    if len(parts) == 1:
        return parts[0]
    kind = type(parts[0])
    joined = {
        f.name: torch.cat([getattr(p, f.name) for p in parts])
        if isinstance(getattr(parts[0], f.name), torch.Tensor)
        else getattr(parts[0], f.name)  # the same for every chunk (a unit target's unit)
        for f in fields(kind)
    }
    return kind(**joined)


def take_targets(target: Target, images: torch.Tensor) -> Target:
    """The targets of `images` (int64 [N], indices into the batch, repeats allowed), as one
    Target of N images (every tensor field indexed along images)."""
    kind = type(target)
    taken = {
        f.name: getattr(target, f.name)[images.to(getattr(target, f.name).device)]
        if isinstance(getattr(target, f.name), torch.Tensor)
        else getattr(target, f.name)
        for f in fields(kind)
    }
    return kind(**taken)


def as_target(value: Target | torch.Tensor) -> Target:
    """A Target as it is; an int64 [B, T] tensor of classes as a ClassTarget."""
    return value if isinstance(value, Target) else ClassTarget(value)


def batch_rows(target: Target) -> torch.Tensor:
    return torch.arange(target.classes.shape[0], device=target.classes.device)


@dataclass(frozen=True)
class ClassRequest:
    """Class indices for every image; () = each image's top-1 class."""

    indices: tuple[int, ...] = ()

    @property
    def count(self) -> int:
        return max(1, len(self.indices))

    def resolve(self, output: Any, batch: torch.Tensor) -> Target:
        if not isinstance(output, torch.Tensor) or output.ndim != 2:
            raise InvalidInput(
                "target: the model does not return class logits [B, classes]", field="target"
            )
        return ClassTarget(resolve_targets(output, self.indices))


PREDICTED, ALL = "predicted", "all"


@dataclass(frozen=True)
class RegionRequest:
    """Classes (default: the largest class of each image's class map) over a region:
    'predicted' (the pixels predicted as that class), 'all', or a box (x0, y0, x1, y1)."""

    indices: tuple[int, ...] = ()
    region: str | tuple[int, int, int, int] = PREDICTED

    @property
    def count(self) -> int:
        return max(1, len(self.indices))

    def resolve(self, output: Any, batch: torch.Tensor) -> Target:
        size = (batch.shape[-2], batch.shape[-1])
        with torch.no_grad():
            predicted = class_scores(output, size).detach().argmax(dim=1)  # [B, H, W]
        count = predicted.shape[0]
        if self.indices:
            classes = torch.tensor(self.indices, device=batch.device).expand(count, -1)
        else:
            largest = [int(torch.bincount(m.flatten()).argmax()) for m in predicted]
            classes = torch.tensor(largest, device=batch.device)[:, None]
        if self.region == PREDICTED:
            masks = (predicted[:, None] == classes[:, :, None, None]).float()
        else:
            masks = torch.zeros((*classes.shape, *size), device=batch.device)
            if self.region == ALL:
                masks += 1
            else:
                x0, y0, x1, y1 = self.region
                masks[..., y0:y1, x0:x1] = 1
        return RegionTarget(classes.contiguous(), masks)


@dataclass(frozen=True)
class BoxRequest:
    """A label and a box for every image, or the i-th detection (by score) of each image;
    default: each image's top detection."""

    label: int | None = None
    box: tuple[float, float, float, float] | None = None
    detections: tuple[int, ...] = ()

    @property
    def count(self) -> int:
        return 1 if self.box is not None else max(1, len(self.detections))

    def resolve(self, output: Any, batch: torch.Tensor) -> Target:
        device = batch.device
        if self.box is not None and self.label is not None:
            count = batch.shape[0]
            boxes = torch.tensor(self.box, dtype=torch.float32, device=device)
            classes = torch.full((count, 1), self.label, dtype=torch.long, device=device)
            return BoxTarget(classes, boxes.expand(count, 1, 4).contiguous())
        wanted = self.detections or (0,)
        labels, boxes = [], []
        for image, found in enumerate(detections(output)):
            order = found["scores"].detach().argsort(descending=True, stable=True)
            available = int(order.numel())
            for index in wanted:
                if index >= available:
                    raise InvalidInput(
                        f"detection: image {image} has {available} detections, so detection "
                        f"{index} does not exist (valid: 0-{available - 1})"
                        if available
                        else f"detection: image {image} has no detections to explain",
                        field="detection",
                        valid_range=[0, max(available - 1, 0)],
                    )
            picked = order[list(wanted)]
            labels.append(found["labels"].detach()[picked])
            boxes.append(found["boxes"].detach()[picked].float())
        return BoxTarget(torch.stack(labels).long(), torch.stack(boxes))


# A unit (`unit_target`, which builds on this module) is a request too.
TargetRequest = Union[ClassRequest, RegionRequest, BoxRequest, "UnitRequest"]  # noqa: UP007
