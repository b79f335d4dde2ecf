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
        pattern=r"^[A-Za-z0-9_.:-]+$",
        description="redis: the start of every key (two bots on one database need two prefixes)",
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
    state_dir: str = Field(default_factory=lambda: platformdirs.user_state_dir("botbridge"))
    store: StoreConfig = StoreConfig()
    default_backend: str | None = None
    max_in_flight: int = Field(32, ge=1, description="backend calls at once; more wait in line")
    max_input_chars: int = Field(8000, ge=1)
    dedup_ttl: float = Field(172800.0, gt=0, description="seconds an event id is remembered")
    drain_timeout: float = Field(30.0, ge=0)
    delivery: DeliverySettings = DeliverySettings()
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
