"""Prediction bodies."""

from pydantic import BaseModel, Field


class PredictionItem(BaseModel):
    class_index: int
    label: str
    probability: float = Field(ge=0, le=1)


class PredictResponse(BaseModel):
    model: str
    predictions: list[list[PredictionItem]] = Field(
        description="one list per image, most probable first"
    )
