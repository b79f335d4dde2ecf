"""The config file: YAML, `${VAR}` / `${VAR:-default}` from the environment, validated by pydantic.

Every mistake becomes a `ConfigError` naming its path in the file (`backends.main.base_url: field
required`), raised before anything touches the network. Secrets are `SecretStr`: their repr is
masked, and `secret_values()` lists them for the log redactor.
"""

from __future__ import annotations

import os
import re
import string
from pathlib import Path
from typing import Annotated, Any, Literal

import platformdirs
import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from .errors import ConfigError


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


HttpUrl = Annotated[str, Field(pattern=r"^https?://[^\s]+$")]

# ---------------------------------------------------------------------------------------- backends


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


BackendConfig = Annotated[
    EchoBackend | OpenAIBackend | NexusBackend | NexusGPTBackend | NugenBackend,
    Field(discriminator="type"),
]
BACKEND_TYPES = ("echo", "openai", "nexus", "nexusgpt", "nugen")

# ---------------------------------------------------------------------------------------- adapters


class TelegramAdapter(Strict):
    enabled: bool = True
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
    typing_interval: float = Field(4.0, gt=0, description="seconds between typing signals")
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


class DiscordAdapter(Strict):
    enabled: bool = True
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


class SlackAdapter(Strict):
    enabled: bool = True
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


class Adapters(Strict):
    telegram: TelegramAdapter | None = None
    discord: DiscordAdapter | None = None
    slack: SlackAdapter | None = None

    def enabled(self) -> dict[str, Strict]:
        found = {"telegram": self.telegram, "discord": self.discord, "slack": self.slack}
        return {name: cfg for name, cfg in found.items() if cfg is not None and cfg.enabled}


# ------------------------------------------------------------------------------------ bridge, http

DEFAULT_APOLOGY = "Sorry, I couldn't get an answer just now. Please try again in a moment."


class StoreConfig(Strict):
    type: Literal["sqlite", "redis"] = "sqlite"
    path: str | None = None  # sqlite: default {state_dir}/botbridge.sqlite3; ":memory:" for tests
    url: str = "redis://127.0.0.1:6379/0"


class BridgeSettings(Strict):
    session_keys: Literal["qualified", "raw"] = "qualified"
    state_dir: str = Field(default_factory=lambda: platformdirs.user_state_dir("botbridge"))
    store: StoreConfig = StoreConfig()
    default_backend: str | None = None
    max_in_flight: int = Field(32, ge=1, description="backend calls at once; more wait in line")
    max_input_chars: int = Field(8000, ge=1)
    dedup_ttl: float = Field(172800.0, gt=0, description="seconds an event id is remembered")
    drain_timeout: float = Field(30.0, ge=0)
    breaker_threshold: int = Field(
        5, ge=0, description="backend failures in a row that open its circuit; 0: never"
    )
    breaker_cooldown: float = Field(30.0, gt=0, description="seconds a circuit stays open")
    apology: str = DEFAULT_APOLOGY
    help_text: str | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = "text"
    log_levels: dict[str, Literal["debug", "info", "warning", "error"]] = {}

    def store_path(self) -> str:
        if self.store.path:
            return self.store.path
        return str(Path(self.state_dir) / "botbridge.sqlite3")


class HttpSettings(Strict):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535, description="0: any free port")
    readiness_timeout: float = Field(
        5.0, gt=0, description="seconds /readyz waits for the store and adapters: then 503"
    )
    watch_interval: float = Field(
        5.0, ge=0, description="seconds between health checks that log (dis)connects; 0: off"
    )


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


class Config(Strict):
    bridge: BridgeSettings = BridgeSettings()
    backends: dict[str, BackendConfig] = {}
    routes: list[Route] = []
    access: AccessSettings = AccessSettings()
    adapters: Adapters = Adapters()
    http: HttpSettings = HttpSettings()

    @model_validator(mode="after")
    def _names_resolve(self) -> Config:
        names = set(self.backends)
        for i, route in enumerate(self.routes):
            if route.backend not in names:
                raise _PathError(f"routes.{i}.backend", f"no backend named {route.backend!r}")
        default = self.bridge.default_backend
        if default is not None and default not in names:
            raise _PathError("bridge.default_backend", f"no backend named {default!r}")
        if default is None and len(names) > 1:
            raise _PathError(
                "bridge.default_backend", "required when more than one backend is configured"
            )
        if not self.http.enabled:
            for name, cfg in self.adapters.enabled().items():
                if getattr(cfg, "mode", None) in ("webhook", "http"):
                    why = f"must be true: adapters.{name} receives its events over HTTP"
                    raise _PathError("http.enabled", why)
        return self

    def default_backend(self) -> str | None:
        return self.bridge.default_backend or next(iter(self.backends), None)


class _PathError(ValueError):
    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


# ------------------------------------------------------------------------------------- loading

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _substitute(value: Any, path: str, env: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _substitute(v, f"{path}.{k}" if path else str(k), env) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, f"{path}.{i}", env) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env and env[name] != "":
            return env[name]
        if default is not None:
            return default
        raise ConfigError(path, f"environment variable {name} is not set")

    return _VAR.sub(replace, value)


def _describe(error: dict[str, Any]) -> tuple[str, str]:
    loc = [str(part) for part in error["loc"]]
    # A tagged union puts the tag in the path (backends.main.openai.base_url): drop it.
    if len(loc) > 2 and loc[0] == "backends" and loc[2] in BACKEND_TYPES:
        del loc[2]
    kind, message = error["type"], error["msg"]
    if kind == "missing":
        message = "field required"
    elif kind == "extra_forbidden":
        message = "unknown key"
    elif kind == "union_tag_invalid":
        loc.append("type")
        message = f"unknown type {error['input'].get('type')!r}; one of {', '.join(BACKEND_TYPES)}"
    elif kind == "union_tag_not_found":
        loc.append("type")
        message = f"field required (one of {', '.join(BACKEND_TYPES)})"
    elif kind == "value_error":
        cause = error.get("ctx", {}).get("error")
        if isinstance(cause, _PathError):
            return cause.path, cause.message
        message = message.removeprefix("Value error, ")
        # Validators of one section name a sub-key first ("webhook_url: required …").
        head, sep, tail = message.partition(": ")
        if sep and re.fullmatch(r"[a-z_]+", head):
            loc.append(head)
            message = tail
    elif kind == "string_pattern_mismatch":
        message = "must be an http:// or https:// URL"
    else:
        message = message[:1].lower() + message[1:]
    return ".".join(loc), message


def parse_config(raw: Any, env: dict[str, str] | None = None) -> Config:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("", "the config file must be a mapping of sections")
    data = _substitute(raw, "", dict(os.environ) if env is None else env)
    # A section left empty (`adapters:` with everything below commented out) is unset; elsewhere
    # null is a value (`denied_reply: null` means no reply).
    data = {k: v for k, v in data.items() if v is not None}
    if isinstance(data.get("adapters"), dict):
        data["adapters"] = {k: v for k, v in data["adapters"].items() if v is not None}
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        path, message = _describe(exc.errors()[0])
        more = len(exc.errors()) - 1
        if more:
            message += f" (and {more} more problem{'s' if more > 1 else ''})"
        raise ConfigError(path, message) from None


def load_config(path: str | os.PathLike[str], env: dict[str, str] | None = None) -> Config:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("", f"cannot read {path}: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError("", f"{path} is not valid YAML{where}") from None
    return parse_config(raw, env)


def secret_values(config: Config) -> list[str]:
    """Every secret in the config, for the log redactor."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, SecretStr):
            value = node.get_secret_value()
            if len(value) >= 4:
                found.append(value)
        elif isinstance(node, BaseModel):
            for name in type(node).model_fields:
                walk(getattr(node, name))
        elif isinstance(node, dict):
            for item in node.values():
                walk(item)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(config)
    return found


def embedded_default() -> Config:
    """What `botbridge console` uses with no -c: the echo backend and a state file."""
    return Config.model_validate({"backends": {"echo": {"type": "echo"}}})
