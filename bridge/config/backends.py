"""The `backends:` section: one model per LLM API type, chosen by `type:`.

Each model holds what its module in `bridge/backends/` needs to reach its API; `BackendBase` is
what every HTTP backend shares (timeouts, retries).
"""

from __future__ import annotations

import string
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, model_validator

from ._base import HttpUrl, Strict


class BackendBase(Strict):
    timeout: float = Field(120.0, gt=0, description="seconds for one whole answer")
    connect_timeout: float = Field(10.0, gt=0)
    max_retries: int = Field(2, ge=0, le=10, description="retries after the first attempt")
    retry_backoff: float = Field(0.5, ge=0, description="first backoff, doubled each retry")
    max_retry_wait: float = Field(30.0, ge=0, description="longest Retry-After we wait out")


class EchoBackend(Strict):
    type: Literal["echo"]


class HistoryLimits(Strict):
    max_messages: int = Field(20, ge=0)
    max_chars: int = Field(16000, ge=0)


Models = list[Annotated[str, Field(min_length=1)]] | None


class OpenAIBackend(BackendBase):
    type: Literal["openai"]
    base_url: HttpUrl
    api_key: SecretStr | None = None
    model: str | None = None
    session: Literal["header", "body", "bridge"] = "bridge"
    session_header: str = "x-session-key"
    session_field: str = "session_id"
    system_prompt: str | None = None
    history: HistoryLimits = HistoryLimits()
    extra_body: dict[str, Any] = {}
    models: Models = Field(
        None, description="models /model may switch between, for messages no route matches"
    )
    vision: bool = Field(
        False, description="the model can see: pictures sent to the bot are passed on to it"
    )
    stream: bool = Field(
        False,
        description="ask with `stream: true` and show the answer as it is written, where the "
        "adapter streams (server-sent events)",
    )

    @model_validator(mode="after")
    def _prompt_needs_bridge_history(self) -> OpenAIBackend:
        if self.system_prompt is not None and self.session != "bridge":
            # A server keeping its own history takes only the new message: there is no place
            # for a system prompt, and sending one every turn would pile up in its history.
            raise ValueError(f"system_prompt: {server_keeps_history(self.session)}")
        return self


def server_keeps_history(session: str) -> str:
    """Why a `system_prompt` cannot go to a backend whose server keeps the history."""
    return (
        f"the server keeps this conversation's history (session: {session}), so the bridge "
        "cannot send it a system prompt; set the prompt on the server, or use session: bridge"
    )


class NexusBackend(BackendBase):
    type: Literal["nexus"]
    base_url: HttpUrl
    account: str
    access_key: SecretStr
    secret_key: SecretStr
    api: str
    command: str = "interact"
    instance: str
    history: Literal["fold", "none"] = "fold"
    history_turns: int = Field(6, ge=0, description="recent exchanges folded into the prompt")
    history_max_chars: int = Field(6000, ge=0)
    prompt_template: str = "{history}User: {text}\nAssistant:"
    turn_template: str = "User: {user}\nAssistant: {assistant}\n\n"
    probe_prompt: str = "Reply with the single word OK."
    verify: bool = True
    ca_file: str | None = None

    @model_validator(mode="after")
    def _templates_and_tls(self) -> NexusBackend:
        _check_template("prompt_template", self.prompt_template, {"history", "text"}, "text")
        _check_template("turn_template", self.turn_template, {"user", "assistant"}, "user")
        if self.ca_file and not self.verify:
            raise ValueError("ca_file: cannot be used with verify: false")
        return self


def _check_template(key: str, template: str, allowed: set[str], required: str) -> None:
    """A template names only known fields (and `required`); literal braces are doubled."""
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise ValueError(f"{key}: {exc}") from None
    if fields - allowed:
        unknown = sorted(fields - allowed)
        raise ValueError(f"{key}: unknown field(s) {unknown}; use {sorted(allowed)}")
    if required not in fields:
        raise ValueError(f"{key}: must contain {{{required}}}")


class NexusGPTBackend(BackendBase):
    type: Literal["nexusgpt"]
    base_url: HttpUrl = "https://api.nexusgpt.io"
    api_key: SecretStr
    poll_timeout: float = Field(90.0, gt=0)
    poll_initial: float = Field(0.5, gt=0)
    poll_factor: float = Field(1.5, ge=1)
    poll_max: float = Field(4.0, gt=0)
    split_long_input: bool = False
    messages_per_minute: int = Field(60, ge=1)


class NugenBackend(BackendBase):
    type: Literal["nugen"]
    base_url: HttpUrl = "https://api.nugen.in"
    token: SecretStr
    engine_id: str
    model_llm: str = "llama-v3p3-70b-instruct"
    mode: Literal["vanilla", "agentic"] = "vanilla"
    top_k: int = Field(5, ge=1, le=30)
    prompt_id: str | None = None
    models: Models = Field(
        None, description="values of model_llm /model may switch between, for unrouted messages"
    )


BackendConfig = Annotated[
    EchoBackend | OpenAIBackend | NexusBackend | NexusGPTBackend | NugenBackend,
    Field(discriminator="type"),
]
BACKEND_TYPES = ("echo", "openai", "nexus", "nexusgpt", "nugen")
