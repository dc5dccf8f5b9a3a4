"""Embeddings of many images: features at a layer, projected to 2-D by PCA or t-SNE."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException

from api_schemas.insight import EmbeddingMethod, EmbeddingResponse
from model_registry.errors import BadRequest, InvalidInput, PayloadTooLarge
from service.engine.insight.cost import embedding_seconds
from service.engine.insight.embedding import plan_embedding
from service.engine.progress import Progress
from service.jobs.job_store import Encoded
from service.routes import common
from service.routes.deps import ServingDep
from service.routes.options import EmbeddingOptions
from service.settings import Settings
from service.workers.insight_tasks import EMBEDDING_CHUNK, embedding_task

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


@router.post(
    "/{model}/embedding",
    response_model=EmbeddingResponse,
    openapi_extra=_MULTIPART,
    responses={
        200: {"content": {"application/json": {}, "image/png": {}}},
        **common.JOB_ACCEPTED,
        **common.error_responses(
            BadRequest,
            *common.MODEL_ERRORS,
            *common.IMAGE_ERRORS,
            *common.DEVICE_ERRORS,
            *common.JOB_ERRORS,
        ),
    },
)
async def embedding(
    request: Request, serving: ServingDep, options: Annotated[EmbeddingOptions, Query()]
) -> Response:
    """Map many images to 2-D points by their features at one layer."""
    model, settings = serving.model, serving.settings
    uploads, labels = await read_many(request, settings)
    plan = plan_embedding(model, **options.plan_args(), count=len(uploads))
    fmt = options.fmt.value

    def work(progress: Progress) -> Encoded:
        answer = embedding_task(
            model,
            uploads,
            plan,
            fmt=fmt,
            labels=labels,
            thumbnails=options.thumbnails,
            max_pixels=settings.max_image_pixels,
            progress=progress,
        )
        result = answer.result
        return common.encoded(
            fmt,
            answer,
            lambda _png: EmbeddingResponse(
                model=model.name,
                layer=plan.describe(),
                feature_dim=result.feature_dim,
                method=EmbeddingMethod(plan.method),
                count=plan.count,
                seed=plan.seed,
                perplexity=plan.perplexity if plan.method == "tsne" else None,
                points=result.points.tolist(),
                explained_variance=result.explained_variance,
                labels=labels,
            ),
        )

    speed = settings.flops_per_second(model.device.type)
    estimate = embedding_seconds(
        model, count=len(uploads), method=plan.method, flops_per_second=speed
    )
    total = -(-len(uploads) // EMBEDDING_CHUNK) + 1
    return await common.answer_or_job(
        serving, "embedding", work, total=total, estimate_s=estimate, run_async=options.run_async
    )
