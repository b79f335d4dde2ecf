"""The `adapters.discord:` section: what `adapters/discord.py` needs.

Each platform declares its own settings in a file of its own, so a new key for one platform
touches one short file."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, SecretStr, model_validator

from ._base import HttpUrl, Strict
from .streaming import StreamingSettings


class DiscordAdapter(Strict):
    enabled: bool = True
    streaming: StreamingSettings = StreamingSettings()
    token: SecretStr
    # REST base including the version (https://discord.com/api/v10); None: discord.py's default.
    api_base_url: HttpUrl | None = None
    # Every gateway connection goes here when set; otherwise to the URL GET /gateway/bot names.
    gateway_url: Annotated[str, Field(pattern=r"^wss?://[^\s]+$")] | None = None
    shard_count: int | None = Field(None, ge=1)
    shard_ids: list[int] | None = None
    threads_as_groups: bool = False
    mention_author: bool = False
    message_content: bool = Field(
        True, description="request the privileged Message Content intent"
    )
    typing_delay: float = Field(
        1.0, ge=0, description="seconds an answer takes before typing shows (0: at once)"
    )
    ready_timeout: float = Field(60.0, gt=0, description="seconds start-up waits for READY")
    guild_ready_timeout: float = Field(
        2.0, gt=0, description="seconds discord.py waits for the last GUILD_CREATE after READY"
    )
    identify_delay: float = Field(
        5.0, ge=0, description="seconds before a repeated IDENTIFY (Discord allows one per 5 s)"
    )

    @model_validator(mode="after")
    def _shards(self) -> DiscordAdapter:
        if self.shard_ids is not None:
            if self.shard_count is None:
                raise ValueError("shard_ids: needs shard_count")
            if not self.shard_ids or any(not 0 <= i < self.shard_count for i in self.shard_ids):
                raise ValueError("shard_ids: each must be at least 0 and below shard_count")
        return self
