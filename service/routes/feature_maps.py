"""Feature maps of any layers, as a PNG panel, raw arrays or JSON."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from api_schemas.feature_maps import FeatureMapResponse, LayerMapsInfo
from api_schemas.models import Fitting
from service.engine.encode import NPY_MEDIA_TYPE, NPZ_MEDIA_TYPE, PNG_MEDIA_TYPE
from service.engine.feature_maps import (
    OutputCaps,
    channel_ranges,
    check_output_size,
    plan_feature_maps,
)
from service.engine.images import upload_geometries
from service.engine.render import RenderOptions, check_colormap
from service.routes.common import (
    DEVICE_ERRORS,
    IMAGE_ERRORS,
    MODEL_ERRORS,
    answers,
    encoded,
    respond,
)
from service.routes.deps import (
    ActivationCacheDep,
    ImagesDep,
    ModelDep,
    PoolDep,
    SettingsDep,
    TenantDep,
)
from service.routes.options import FeatureMapOptions
from service.workers.capture_flow import captured_layers
from service.workers.tasks import feature_maps_answer

router = APIRouter(prefix="/v1/models", tags=["feature maps"])

_ANSWERS = answers(
    "png: the panel; npy: float32 [B, k, H, W] for one layer; "
    "npz (application/zip): one array per layer name; json: metadata and the panel as base64",
    PNG_MEDIA_TYPE,
    NPY_MEDIA_TYPE,
    NPZ_MEDIA_TYPE,
    body=FeatureMapResponse,
    errors=(*MODEL_ERRORS, *IMAGE_ERRORS, *DEVICE_ERRORS),
)


@router.post("/{model}/feature-maps", responses=_ANSWERS, response_model=None)
async def feature_maps(
    model: ModelDep,
    images: ImagesDep,
    pool: PoolDep,
    settings: SettingsDep,
    activations: ActivationCacheDep,
    tenant: TenantDep,
    options: Annotated[FeatureMapOptions, Query()],
) -> Response:
    """Capture layers in one forward pass and return their channels."""
    fmt = options.fmt.value
    plan = plan_feature_maps(model, **options.plan_args())
    caps = OutputCaps(settings.max_layers, settings.max_tiles, settings.max_output_bytes)
    check_output_size(model, plan, images=len(images), fmt=fmt, tile=options.upsample, caps=caps)
    check_colormap(options.colormap)
    render = RenderOptions(
        colormap=options.colormap,
        scale=options.scale.value,
        columns=options.columns,
        upsample=options.upsample,
        overlay=options.overlay,
        labels=options.labels,
        canvas=options.canvas.value,
    )
    pixels, outputs = await captured_layers(
        pool,
        activations,
        model,
        images,
        plan,
        max_pixels=settings.max_image_pixels,
        tenant=tenant.name,
    )
    answer = await pool.cpu(
        feature_maps_answer,
        model,
        pixels,
        outputs,
        plan,
        fmt=fmt,
        options=render,
        uploads=images,
        spec=model.spec,
        max_pixels=settings.max_image_pixels,
    )

    fits = await pool.cpu(upload_geometries, images, model.spec) if fmt == "json" else []

    def to_json(png_base64: str) -> FeatureMapResponse:
        infos = []
        for layer in answer.result.layers:
            low, high = channel_ranges(layer.values)
            infos.append(
                LayerMapsInfo(
                    name=layer.name,
                    layer_shape=list(layer.shape),
                    shape=list(layer.values.shape),
                    channels=layer.channels.tolist(),
                    min=low.tolist(),
                    max=high.tolist(),
                )
            )
        return FeatureMapResponse(
            model=model.name,
            reduce=options.reduce,
            batch=len(images),
            input_size=list(model.spec.input_size),
            fitting=[Fitting.model_validate(fit.to_dict()) for fit in fits],
            layers=infos,
            png_base64=png_base64,
        )

    return respond(encoded(fmt, answer, to_json))
