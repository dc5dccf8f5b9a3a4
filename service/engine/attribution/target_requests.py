"""Read `target`, `region`, `box` and `detection` into a target request, checked against the
model's task and input size before any compute; every error names the field."""

from __future__ import annotations

import math

from model_registry.errors import InvalidInput
from model_registry.registry import LoadedModel
from model_registry.spec import CLASSIFICATION, DETECTION, SEGMENTATION
from service.engine.attribution.target_objects import (
    ALL,
    PREDICTED,
    BoxRequest,
    ClassRequest,
    RegionRequest,
    TargetRequest,
)
from service.engine.attribution.targets import parse_targets
from service.engine.attribution.unit_target import UnitRequest, parse_unit

TAKES = {
    CLASSIFICATION: "target=<class>[,<class>...]",
    SEGMENTATION: "target=<class>[,...] and region=predicted|all|x0,y0,x1,y1",
    DETECTION: "target=<label>&box=x0,y0,x1,y1, or detection=<i>[,<i>...]",
}
_FIELDS = {CLASSIFICATION: (), SEGMENTATION: ("region",), DETECTION: ("box", "detection")}


def parse_request(
    model: LoadedModel,
    targets: str | None,
    *,
    region: str | None = None,
    box: str | None = None,
    detection: str | None = None,
    unit: str | None = None,
) -> TargetRequest | UnitRequest:
    """The request for this model's task, or the unit `unit` names (`unit_target`).

    Raises:
        InvalidInput: a field the task does not take (saying which it takes), a box outside
            the input, an unknown class, a malformed detection index, a unit outside its
            layer or map, or a unit together with a target.
    """
    task = model.spec.task
    given = {"region": region, "box": box, "detection": detection}
    if unit not in (None, ""):
        for field, value in {"target": targets, **given}.items():
            if value not in (None, ""):
                raise InvalidInput(
                    f"unit: a unit is the target; give either unit or {field}, not both",
                    field="unit",
                )
        return parse_unit(model, str(unit))
    for field, value in given.items():
        if value not in (None, "") and field not in _FIELDS[task]:
            raise InvalidInput(
                f"{field}: model '{model.name}' is a {task} model; its targets are {TAKES[task]}",
                field=field,
                takes=TAKES[task],
            )
    indices = parse_targets(targets, model)
    if task == SEGMENTATION:
        return RegionRequest(indices, _region(model, region))
    if task == DETECTION:
        return _box_request(model, indices, box, detection)
    return ClassRequest(indices)


def _region(model: LoadedModel, text: str | None) -> str | tuple[int, int, int, int]:
    value = (text or PREDICTED).strip()
    if value in (PREDICTED, ALL):
        return value
    x0, y0, x1, y1 = _box(model, value, "region")
    return (math.floor(x0), math.floor(y0), math.ceil(x1), math.ceil(y1))


def _box(model: LoadedModel, text: str, field: str) -> tuple[float, float, float, float]:
    height, width = model.spec.input_size
    rule = (
        f"x0,y0,x1,y1 in the model input's pixels with 0 <= x0 < x1 <= {width} and "
        f"0 <= y0 < y1 <= {height}"
    )
    parts = [p.strip() for p in text.split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        extra = " (or predicted, all)" if field == "region" else ""
        raise InvalidInput(
            f"{field}: '{text}' is not {rule}{extra}",
            field=field,
            valid_range=[[0, width], [0, height]],
        )
    x0, y0, x1, y1 = values
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise InvalidInput(
            f"{field}: [{text}] is outside the picture; use {rule}",
            field=field,
            valid_range=[[0, width], [0, height]],
        )
    return (x0, y0, x1, y1)


def _box_request(
    model: LoadedModel, indices: tuple[int, ...], box: str | None, detection: str | None
) -> BoxRequest:
    if box not in (None, "") and detection not in (None, ""):
        raise InvalidInput(
            "detection: give either box (with target) or detection, not both", field="detection"
        )
    if box not in (None, ""):
        if len(indices) != 1:
            raise InvalidInput(
                "target: box needs exactly one target label (the class the box should hold)",
                field="target",
            )
        return BoxRequest(label=indices[0], box=_box(model, box, "box"))
    if indices:
        raise InvalidInput(
            "target: on a detection model a label goes with a box; "
            f"its targets are {TAKES[DETECTION]}",
            field="target",
            takes=TAKES[DETECTION],
        )
    wanted = []
    for item in (detection or "").split(","):
        item = item.strip()
        if not item:
            continue
        if not item.isdigit() or len(item) > 6:
            raise InvalidInput(
                f"detection: '{item}' is not a detection index (0 = the highest score)",
                field="detection",
            )
        wanted.append(int(item))
    return BoxRequest(detections=tuple(dict.fromkeys(wanted)))
