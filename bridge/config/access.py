"""Who gets which backend and who may use the bot: `routes:` and `access:`, matched by the same
fields (platform, kind, workspace, chat, user)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from ._base import Strict

IdList = str | list[str]


class Match(Strict):
    """What a rule matches on; an unset field matches anything. First matching rule wins."""

    platform: str | None = None
    kind: Literal["dm", "group"] | None = None
    workspace: IdList | None = None
    chat: IdList | None = None
    user: IdList | None = None


class Route(Match):
    backend: str
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="what this route changes about its backend's answers (persona, model); "
        "checked against the backend's type",
    )
    models: list[Annotated[str, Field(min_length=1)]] | None = Field(
        None, description="models /model may switch between here; default: the backend's models"
    )


class AccessRule(Match):
    allow: bool


class RateLimit(Strict):
    messages: int = Field(ge=1)
    per_seconds: float = Field(gt=0)


class AccessSettings(Strict):
    """Who may use the bot, and how often: the operator's guard on their LLM bill."""

    rules: list[AccessRule] = []
    default: Literal["allow", "deny"] = "allow"
    denied_reply: str | None = "Sorry, this bot is not open to you."
    rate_limit: RateLimit | None = None  # per user, over all their chats
    rate_limited_reply: str | None = (
        "You're sending messages faster than I can answer. Please try again in {wait} seconds."
    )

    @model_validator(mode="after")
    def _reply_formats(self) -> AccessSettings:
        try:
            (self.rate_limited_reply or "").format(wait=1)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"rate_limited_reply: only {{wait}} may be used ({exc!r})") from None
        return self
