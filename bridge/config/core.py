"""The `bridge:` section (session keys, store, limits, texts, logging) and the `http:` section."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

import platformdirs
from pydantic import AfterValidator, Field, model_validator

from ._base import PathError, Strict

# `~/x` is the user's home, as in a shell (without this, a literal `./~` directory).
Expanded = Annotated[str, AfterValidator(os.path.expanduser)]


def _key_prefix(prefix: str) -> str:
    # `:` joins the parts of a key; `{…}` would make part of every key a Redis Cluster hash tag.
    if not prefix or any(c.isspace() or c in ":{}" for c in prefix):
        raise ValueError("must be non-empty, without spaces, ':', '{' or '}'")
    return prefix

DEFAULT_APOLOGY = "Sorry, I couldn't get an answer just now. Please try again in a moment."


class StoreConfig(Strict):
    type: Literal["sqlite", "redis"] = "sqlite"
    path: Expanded | None = None  # sqlite: default {state_dir}/botbridge.sqlite3; ":memory:"
    url: str = "redis://127.0.0.1:6379/0"
    prefix: Annotated[str, AfterValidator(_key_prefix)] = Field(
        "botbridge",
        description="redis: every key starts with this and ':' (bridges sharing one database)",
    )
    partitions: int = Field(
        16,
        ge=1,
        le=1024,
        description="redis, split roles: work-queue partitions (the most workers that share "
        "the work); every process of one bridge must use the same number",
    )
    lease: float = Field(
        20.0,
        ge=1,
        description="redis: seconds a process keeps its pending messages after its last "
        "heartbeat; then another process takes them over",
    )
    recover_every: float = Field(
        10.0, gt=0, description="redis: seconds between looks for a dead process's messages"
    )
    cluster: bool = Field(
        False, description="redis: `url` names a node of a Redis Cluster (or Valkey cluster)"
    )

    @model_validator(mode="after")
    def _cluster_on_redis(self) -> StoreConfig:
        if self.cluster and self.type != "redis":
            raise PathError("bridge.store.cluster", "a cluster needs type: redis")
        if self.cluster and urlsplit(self.url).path.strip("/") not in ("", "0"):
            raise PathError("bridge.store.url", "a Redis Cluster has only database 0")
        return self


class DeliverySettings(Strict):
    """Posting replies: retries of a send that failed for a passing reason, and readiness."""

    retry_initial: float = Field(
        1.0, gt=0, description="seconds before the first retry of a failed send; doubled after"
    )
    retry_max: float = Field(300.0, gt=0, description="longest wait between two attempts")
    unready_failures: int = Field(
        5, ge=1, description="sends failing in a row that make a platform not ready"
    )
    unready_after: float = Field(
        60.0, gt=0, description="seconds a reply may keep failing before its platform is not ready"
    )


class BridgeSettings(Strict):
    session_keys: Literal["qualified", "raw"] = "qualified"
    state_dir: Expanded = Field(default_factory=lambda: platformdirs.user_state_dir("botbridge"))
    store: StoreConfig = StoreConfig()
    default_backend: str | None = None
    # Answers per second are at most max_in_flight / the backend's latency: 1000 lets a 2 s
    # backend reach ~500 answers/s, about what one process's CPU carries (README, Performance).
    max_in_flight: int = Field(
        1000, ge=1, description="backend calls at once; more wait in line"
    )
    # A burst taken in faster than it is asked floods the event loop (bridge.pending).
    max_pending: int = Field(
        64, ge=1, description="messages taken in and not yet asked; more wait at intake"
    )
    max_input_chars: int = Field(8000, ge=1)
    max_answer_chars: int = Field(
        20000, ge=100, description="longer answers are cut at a clean boundary, with a note"
    )
    dedup_ttl: float = Field(172800.0, gt=0, description="seconds an event id is remembered")
    session_ttl: float = Field(
        2592000.0, gt=0, description="seconds an idle session's state is kept (default 30 days)"
    )
    purge_interval: float = Field(
        3600.0, gt=0, description="seconds between background sweeps of expired state"
    )
    drain_timeout: float = Field(30.0, ge=0)
    delivery: DeliverySettings = DeliverySettings()
    breaker_threshold: int = Field(
        5, ge=0, description="backend failures in a row that open its circuit; 0: never"
    )
    breaker_cooldown: float = Field(30.0, gt=0, description="seconds a circuit stays open")
    apology: str = DEFAULT_APOLOGY
    help_text: str | None = Field(
        None, description="the opening of /help; the lines on what this chat offers follow it"
    )
    quote_context: bool = Field(
        True, description="pass the replied-to message to the backend as context"
    )
    quote_max_chars: int = Field(
        1000, ge=20, description="longest replied-to text passed on (cut at a clean boundary)"
    )
    max_image_bytes: int = Field(
        5_000_000, ge=1, description="largest picture passed to a backend that can see"
    )
    reset_clears_model: bool = Field(
        False, description="/reset also forgets the model chosen with /model"
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = "text"
    log_levels: dict[str, Literal["debug", "info", "warning", "error"]] = {}
    log_message_text: bool = Field(
        False,
        description="log what users wrote and the answers, at debug level only (never above)",
    )
    claim_idle: float = Field(
        15.0,
        ge=1,
        description="redis: seconds a silent process keeps its work (a worker's partitions, "
        "the Telegram poller) before another process takes it over",
    )

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
