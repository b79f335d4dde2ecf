"""The `bridge:` section (session keys, store, limits, texts, logging) and the `http:` section."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import Field

from ._base import Strict

DEFAULT_APOLOGY = "Sorry, I couldn't get an answer just now. Please try again in a moment."


class StoreConfig(Strict):
    type: Literal["sqlite", "redis"] = "sqlite"
    path: str | None = None  # sqlite: default {state_dir}/botbridge.sqlite3; ":memory:" for tests
    url: str = "redis://127.0.0.1:6379/0"
    prefix: str = Field(
        "botbridge",
        pattern=r"^[^\s:]+$",
        description="redis: every key starts with this and ':' (bridges sharing one database)",
    )
    partitions: int = Field(
        16,
        ge=1,
        le=1024,
        description="redis, split roles: work-queue partitions (the most workers that share "
        "the work); every process of one bridge must use the same number",
    )


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
