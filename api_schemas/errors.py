"""The error body every 4xx/5xx answer carries."""

from pydantic import BaseModel, ConfigDict, Field


class FieldError(BaseModel):
    field: str = Field(examples=["top_k"])
    detail: str = Field(examples=["top_k: Input should be greater than or equal to 1"])


class ErrorBody(BaseModel):
    """`detail` says what went wrong; `field` names the offending input; extra members
    (choices, valid_range, closest, ...) help the client fix it."""

    model_config = ConfigDict(extra="allow")

    detail: str = Field(examples=["Unknown model 'resnet19'. Available models: digits, resnet18."])
    field: str | None = Field(default=None, examples=["model"])
    errors: list[FieldError] | None = Field(
        default=None, description="a validation error (422): every failing field, in order"
    )
