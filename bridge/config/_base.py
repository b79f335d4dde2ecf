"""What every config section shares: strict frozen models, the URL type, and an error that names
its own path (for checks that span sections and know exactly which key is wrong)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _no_credentials(url: str) -> str:
    # The message never repeats the URL: it holds a password.
    if "@" in urlsplit(url).netloc:
        raise ValueError(
            "must not hold credentials (user:password@host): give the key in its own setting "
            "(api_key, token, …) from the environment"
        )
    return url


HttpUrl = Annotated[str, Field(pattern=r"^https?://[^\s]+$"), AfterValidator(_no_credentials)]


class PathError(ValueError):
    """A validation error that names its full path in the file (`bridge.default_backend`)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message
