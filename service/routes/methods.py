"""The attribution methods the service offers, read from the method registry."""

from __future__ import annotations

from fastapi import APIRouter

from api_schemas.attributions import MethodInfo, MethodList
from service.engine.attribution.methods.registry import (
    CAM_KIND,
    GRADIENT_KIND,
    cam_methods,
    gradient_methods,
)

router = APIRouter(prefix="/v1/methods", tags=["attributions"])


@router.get("", response_model=MethodList)
async def list_methods() -> MethodList:
    """Every CAM and gradient method, with whether it needs a backward pass."""
    data = [
        MethodInfo(name=m.name, kind=kind, needs_gradients=m.needs_gradients, summary=m.summary)
        for kind, methods in ((CAM_KIND, cam_methods()), (GRADIENT_KIND, gradient_methods()))
        for m in methods
    ]
    return MethodList(data=data, count=len(data))
