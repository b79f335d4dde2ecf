"""The `adapters.telegram:` section: what `adapters/telegram.py` needs.

Each platform declares its own settings in a file of its own, so a new key for one platform
touches one short file."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator

from ._base import HttpUrl, Strict
from .streaming import StreamingSettings


class TelegramAdapter(Strict):
    enabled: bool = True
    streaming: StreamingSettings = StreamingSettings()
    token: SecretStr
    mode: Literal["polling", "webhook"] = "polling"
    api_base_url: HttpUrl = "https://api.telegram.org/bot"
    api_file_url: HttpUrl = "https://api.telegram.org/file/bot"
    allowed_updates: list[str] = ["message"]
    poll_timeout: int = Field(30, ge=0, le=50, description="getUpdates long-poll seconds")
    stall_timeout: float = Field(
        120.0, gt=0, description="no getUpdates round trip for this long: restart"
    )
    webhook_url: HttpUrl | None = None
    secret_token: SecretStr | None = None
    webhook_path: str = Field("/telegram/webhook", pattern=r"^/")
    group_messages_per_minute: int = Field(20, ge=1)
    max_sends_per_second: float = Field(
        30.0,
        ge=0,
        description="bot-wide ceiling on messages sent per second (Telegram's is about 30; "
        "paid broadcasts and a local Bot API server allow more); 0: no bot-wide limit",
    )
    typing_interval: float = Field(4.0, gt=0, description="seconds between typing signals")
    typing_delay: float = Field(
        1.0, ge=0, description="seconds an answer takes before typing shows (0: at once)"
    )
    send_retries: int = Field(4, ge=0, le=10, description="network retries of one message")
    retry_backoff: float = Field(0.5, ge=0, description="first backoff, doubled each retry")
    max_backoff: float = Field(30.0, ge=0, description="longest backoff between poll attempts")
    max_retry_after: float = Field(120.0, ge=0, description="longest 429 retry_after waited")

    @model_validator(mode="after")
    def _webhook_needs(self) -> TelegramAdapter:
        if self.mode == "polling" and self.stall_timeout <= self.poll_timeout:
            # Otherwise every healthy long poll would look like a stall.
            raise ValueError("stall_timeout: must be longer than poll_timeout")
        if self.mode == "webhook":
            if not self.webhook_url:
                raise ValueError("webhook_url: required when mode is webhook")
            if not self.secret_token:
                raise ValueError("secret_token: required when mode is webhook")
        return self
