"""The answer to an image upload."""

from pydantic import BaseModel, Field


class StoredImage(BaseModel):
    image_id: str = Field(
        description="SHA-256 of the bytes; pass it as image_id to any POST endpoint"
    )
    width: int
    height: int
    format: str = Field(examples=["PNG"])
    bytes: int
