"""Prediction bodies."""

from pydantic import BaseModel, Field

from api_schemas.models import Fitting


class PredictionItem(BaseModel):
    class_index: int
    label: str
    probability: float = Field(ge=0, le=1)


class PredictResponse(BaseModel):
    model: str
    predictions: list[list[PredictionItem]] = Field(
        description="one list per image, most probable first"
    )
    fitting: list[Fitting] = Field(
        default_factory=list, description="per image, how it was brought to the input size"
    )
