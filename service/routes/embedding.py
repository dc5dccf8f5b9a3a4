"""Embeddings of many images: features at a layer, projected to 2-D by PCA or t-SNE."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException

from api_schemas.insight import EmbeddingFormat, EmbeddingMethod, EmbeddingResponse
from model_registry.errors import BadRequest, InvalidInput, PayloadTooLarge, TooManyJobs, TooSlow
from service.engine.insight.cost import embedding_seconds
from service.engine.insight.embedding import EmbeddingPlan, plan_embedding
from service.engine.insight.progress import Progress
from service.routes.common import DEVICE_ERRORS, IMAGE_ERRORS, MODEL_ERRORS, error_responses
from service.routes.deps import ModelDep, PoolDep, SettingsDep
from service.routes.jobs import JSON_MEDIA_TYPE, JobsDep, answer_or_job
from service.routes.maximize import AsyncQuery
from service.settings import Settings
from service.workers.job_store import Encoded
from service.workers.tasks import EMBEDDING_CHUNK, embedding_task

router = APIRouter(prefix="/v1/models", tags=["insight"])

# Declared by hand: the form is parsed in `read_many` with limits from the settings, since
# FastAPI's own parsing stops at Starlette's default of 1,000 files.
_MULTIPART = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["image"],
                    "properties": {
                        "image": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "the images; repeat the field (up to the server's "
                            "LAYERSCOPE_MAX_EMBEDDING_IMAGES)",
                        },
                        "labels": {
                            "type": "array",
                            "items": {"type": "string"},
                            "description": "optional: one label per image, repeated or in one "
                            "comma- or newline-separated field",
                        },
                    },
                }
            }
        },
    }
}


async def read_many(request: Request, settings: Settings) -> tuple[list[bytes], list[str] | None]:
    """Up to `max_embedding_images` uploads and their optional labels, in order."""
    limit = settings.max_embedding_images
    try:
        form = await request.form(max_files=limit, max_fields=limit + 8)
    except (HTTPException, MultiPartException) as exc:
        message = getattr(exc, "detail", None) or getattr(exc, "message", str(exc))
        if "Too many files" in str(message):
            raise PayloadTooLarge(
                f"image: more than {limit} images in one request (LAYERSCOPE_MAX_EMBEDDING_IMAGES)",
                field="image",
                max_images=limit,
            ) from exc
        raise BadRequest(f"the multipart body could not be read: {message}", field="image") from exc
    except AssertionError as exc:  # Starlette asserts python-multipart is installed, or a form body
        raise BadRequest("send the images as multipart/form-data", field="image") from exc
    try:
        files = [item for item in form.getlist("image") if isinstance(item, UploadFile)]
        if not files:
            raise InvalidInput(
                "image: no image uploaded; send them as multipart form fields 'image' "
                "(repeat the field)",
                field="image",
            )
        uploads = [await upload.read() for upload in files]
        raw_labels = [item for item in form.getlist("labels") if isinstance(item, str)]
    finally:
        await form.close()
    for index, data in enumerate(uploads):
        if not data:
            raise InvalidInput(f"image[{index}] is empty", field="image")
    return uploads, _labels(raw_labels, len(uploads))


def _labels(fields: list[str], count: int) -> list[str] | None:
    if not fields:
        return None
    if len(fields) == 1:
        fields = [part.strip() for part in fields[0].replace("\n", ",").split(",")]
        if fields and fields[-1] == "":
            fields = fields[:-1]
    if len(fields) != count:
        raise InvalidInput(
            f"labels: {len(fields)} labels for {count} images; give one label per image",
            field="labels",
        )
    return fields


def _body(model: str, plan: EmbeddingPlan, result: Any, labels: list[str] | None) -> bytes:
    return (
        EmbeddingResponse(
            model=model,
            layer=plan.describe(),
            feature_dim=result.feature_dim,
            method=EmbeddingMethod(plan.method),
            count=plan.count,
            seed=plan.seed,
            perplexity=plan.perplexity if plan.method == "tsne" else None,
            points=result.points.tolist(),
            explained_variance=result.explained_variance,
            labels=labels,
        )
        .model_dump_json()
        .encode()
    )


@router.post(
    "/{model}/embedding",
    response_model=EmbeddingResponse,
    openapi_extra=_MULTIPART,
    responses={
        200: {"content": {"application/json": {}, "image/png": {}}},
        202: {"description": "accepted as a job; poll the Location header (GET /v1/jobs/{id})"},
        **error_responses(
            BadRequest, *MODEL_ERRORS, *IMAGE_ERRORS, *DEVICE_ERRORS, TooSlow, TooManyJobs
        ),
    },
)
async def embedding(
    request: Request,
    model: ModelDep,
    pool: PoolDep,
    jobs: JobsDep,
    settings: SettingsDep,
    layer: Annotated[
        str | None,
        Query(
            description="default: the input of the final classifier; maps are average-pooled",
            max_length=256,
        ),
    ] = None,
    method: Annotated[
        EmbeddingMethod, Query(description="scikit-learn PCA or t-SNE")
    ] = EmbeddingMethod.pca,
    seed: Annotated[
        int, Query(ge=0, le=2**31 - 1, description="random state of the projection")
    ] = 0,
    perplexity: Annotated[
        float | None,
        Query(
            gt=0, allow_inf_nan=False, description="t-SNE perplexity; default min(30, (n - 1) / 3)"
        ),
    ] = None,
    fmt: Annotated[EmbeddingFormat, Query(alias="format")] = EmbeddingFormat.json,
    thumbnails: Annotated[bool, Query(description="png: draw the images instead of dots")] = False,
    run_async: AsyncQuery = None,
) -> Response:
    """Map many images to 2-D points by their features at one layer."""
    uploads, labels = await read_many(request, settings)
    plan = plan_embedding(
        model,
        layer=layer,
        method=method.value,
        seed=seed,
        perplexity=perplexity,
        count=len(uploads),
    )

    def work(progress: Progress) -> Encoded:
        answer = embedding_task(
            model,
            uploads,
            plan,
            fmt=fmt.value,
            labels=labels,
            thumbnails=thumbnails,
            max_pixels=settings.max_image_pixels,
            progress=progress,
        )
        if fmt is EmbeddingFormat.png:
            return Encoded(answer.body, answer.media_type)
        return Encoded(_body(model.name, plan, answer.result, labels), JSON_MEDIA_TYPE)

    estimate = embedding_seconds(
        model,
        count=len(uploads),
        method=plan.method,
        flops_per_second=settings.flops_per_second(model.device.type),
    )
    return await answer_or_job(
        model=model,
        kind="embedding",
        work=work,
        total=-(-len(uploads) // EMBEDDING_CHUNK) + 1,
        estimate_s=estimate,
        run_async=run_async,
        pool=pool,
        jobs=jobs,
        settings=settings,
    )
