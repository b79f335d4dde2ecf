"""Who gets which backend and who may use the bot: `routes:` and `access:` (rules matched by the
same fields: platform, kind, workspace, chat, user), with the people behind the ids, the admins,
and the daily token budgets."""

from __future__ import annotations

import string
import zoneinfo
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from ._base import PathError, Strict

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
    name: str | None = Field(
        None, description="the route's label in metrics; default routes.{index}"
    )


class AccessRule(Match):
    allow: bool


class RateLimit(Strict):
    messages: int = Field(ge=1)
    per_seconds: float = Field(gt=0)


class PlatformUser(Strict):
    """One account: a platform user id (as the platform writes it), in a Slack workspace."""

    platform: str
    user: str
    workspace: str | None = Field(None, description="Slack team id; unset: any workspace")

    @field_validator("user", "platform", mode="before")
    @classmethod
    def _text(cls, value: object) -> object:
        return str(value) if isinstance(value, int) else value  # `user: 42` is meant as "42"


class DailyBudget(Strict):
    person_daily: int | None = Field(None, ge=0, description="tokens per person per day")
    chat_daily: int | None = Field(None, ge=0, description="tokens per group chat per day")


class Budgets(DailyBudget):
    """Daily token budgets over all backends, and optionally per backend (both apply)."""

    backends: dict[str, DailyBudget] = {}
    timezone: str = Field("UTC", description="the day starts at midnight here (IANA name)")
    reply: str = "You have used today's token budget. It resets at {resets} (in {wait})."

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (an IANA name such as Europe/Berlin)"
            ) from None
        return value

    @field_validator("reply")
    @classmethod
    def _reply_fields(cls, value: str) -> str:
        _only_fields(value, {"resets", "wait"})
        return value

    @property
    def configured(self) -> bool:
        limits = [self, *self.backends.values()]
        return any(b.person_daily is not None or b.chat_daily is not None for b in limits)


class AccessSettings(Strict):
    """Who may use the bot, and how often: the operator's guard on their LLM bill."""

    rules: list[AccessRule] = []
    default: Literal["allow", "deny"] = "allow"
    denied_reply: str | None = "Sorry, this bot is not open to you."
    rate_limit: RateLimit | None = None  # per person, over all their chats
    rate_limited_reply: str | None = (
        "You're sending messages faster than I can answer. Please try again in {wait} seconds."
    )
    admins: list[PlatformUser] = Field(
        [], description="accounts that may use /status, /block, /unblock and /budget"
    )
    people: dict[str, list[PlatformUser]] = Field(
        {}, description="one person's accounts on several platforms share budgets and /forget"
    )
    budgets: Budgets = Budgets()

    @model_validator(mode="after")
    def _reply_formats(self) -> AccessSettings:
        try:
            _only_fields(self.rate_limited_reply or "", {"wait"})
        except ValueError as exc:
            raise ValueError(f"rate_limited_reply: {exc}") from None
        return self

    @model_validator(mode="after")
    def _one_person_per_account(self) -> AccessSettings:
        seen: dict[tuple[str, str | None, str], str] = {}
        for name, accounts in self.people.items():
            if not name or ":" in name:
                raise PathError(f"access.people.{name}", "a name must be non-empty without ':'")
            for i, account in enumerate(accounts):
                who = (account.platform, account.workspace, account.user)
                if who in seen:
                    raise PathError(
                        f"access.people.{name}.{i}", f"this account is already {seen[who]}'s"
                    )
                seen[who] = name
        return self


def _only_fields(template: str, allowed: set[str]) -> None:
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
        template.format(**dict.fromkeys(allowed, "x"))
    except (KeyError, IndexError, ValueError) as exc:
        fields = {repr(exc)}
    if fields - allowed:
        wanted = " and ".join(f"{{{name}}}" for name in sorted(allowed))
        raise ValueError(f"only {wanted} may be used ({', '.join(sorted(fields - allowed))})")
