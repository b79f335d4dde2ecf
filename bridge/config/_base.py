"""What every config section shares: strict frozen models, the URL type, and an error that names
its own path (for checks that span sections and know exactly which key is wrong)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


HttpUrl = Annotated[str, Field(pattern=r"^https?://[^\s]+$")]


class PathError(ValueError):
    """A validation error that names its full path in the file (`bridge.default_backend`)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message
