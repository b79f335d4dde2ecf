"""The `adapters.slack:` section: what `adapters/slack.py` needs.

Each platform declares its own settings in a file of its own, so a new key for one platform
touches one short file."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator

from ._base import HttpUrl, Strict
from .streaming import StreamingSettings


class SlackAdapter(Strict):
    enabled: bool = True
    streaming: StreamingSettings = StreamingSettings()
    bot_token: SecretStr
    app_token: SecretStr | None = None  # Socket Mode
    signing_secret: SecretStr | None = None  # HTTP Events
    api_base_url: HttpUrl = "https://slack.com/api/"
    events_path: str = "/slack/events"
    threads_as_groups: bool = False
    progress_reaction: str | None = "hourglass_flowing_sand"  # null: no progress signal
    timeout: float = Field(30.0, gt=0, description="seconds for one Web API call")
    max_retries: int = Field(3, ge=0, le=10, description="retries of a rate-limited API call")

    @model_validator(mode="after")
    def _one_mode(self) -> SlackAdapter:
        if not self.app_token and not self.signing_secret:
            raise ValueError(
                "app_token (Socket Mode) or signing_secret (HTTP Events): one is required"
            )
        if not self.events_path.startswith("/"):
            raise ValueError("events_path: must start with /")
        return self

    @property
    def mode(self) -> Literal["socket", "http"]:
        return "socket" if self.app_token else "http"
