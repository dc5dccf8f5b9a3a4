"""The model list, one model, and a model's layer catalog."""

from __future__ import annotations

from fastapi import APIRouter

from api_schemas.models import LayerItem, LayerList, ModelInfo, ModelList, Preprocessing
from model_registry.errors import NotReady
from model_registry.registry import LoadedModel
from service.routes.common import MODEL_ERRORS, error_responses
from service.routes.deps import ModelDep, RegistryDep

router = APIRouter(prefix="/v1/models", tags=["models"])


def _info(model: LoadedModel) -> ModelInfo:
    spec = model.spec
    return ModelInfo(
        name=spec.name,
        architecture=spec.architecture,
        num_classes=spec.num_classes,
        input_size=list(spec.input_size),
        in_channels=spec.in_channels,
        mean=list(spec.mean),
        std=list(spec.std),
        device=str(model.device),
        pretrained=model.pretrained,
        layers=len(model.catalog),
        preprocessing=Preprocessing.model_validate(
            {
                "resize": spec.resize,
                "crop_pct": spec.crop_pct,
                "interpolation": spec.interpolation,
            }
        ),
        task=spec.task,
    )


@router.get("", response_model=ModelList, responses=error_responses(NotReady))
async def list_models(registry: RegistryDep) -> ModelList:
    """Every served model."""
    data = [_info(m) for m in registry]
    return ModelList(data=data, count=len(data))


@router.get("/{model}", response_model=ModelInfo, responses=error_responses(*MODEL_ERRORS))
async def get_model(model: ModelDep) -> ModelInfo:
    """One model."""
    return _info(model)


@router.get("/{model}/layers", response_model=LayerList, responses=error_responses(*MODEL_ERRORS))
async def list_layers(model: ModelDep) -> LayerList:
    """The layer catalog: every named module with type, output shape and parameter count."""
    data = [
        LayerItem(
            name=layer.name,
            type=layer.type,
            output_shape=list(layer.output_shape) if layer.output_shape is not None else None,
            params=layer.params,
            spatial=layer.spatial,
            spatial_shape=list(layer.spatial_shape) if layer.spatial_shape is not None else None,
            call=layer.call,
        )
        for layer in model.catalog.entries()
    ]
    return LayerList(model=model.name, data=data, count=len(data))
