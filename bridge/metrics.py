"""Prometheus metrics, in a registry of their own (no global state: tests build as many as needed).

The router, adapters and backends record through one `Metrics` object passed to them; `/metrics`
renders its registry.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Bridge-added latency lives in milliseconds territory; backend latency in seconds.
_ADDED_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
_BACKEND_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120)

OUTCOMES = ("received", "answered", "ignored", "refused", "failed", "duplicate")


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.messages = Counter(
            "botbridge_messages",
            "Messages by platform and outcome",
            ["platform", "outcome"],
            registry=r,
        )
        self.backend_latency = Histogram(
            "botbridge_backend_request_seconds",
            "Backend answer time",
            ["backend", "outcome"],
            buckets=_BACKEND_BUCKETS,
            registry=r,
        )
        self.backend_errors = Counter(
            "botbridge_backend_errors",
            "Backend failures by cause",
            ["backend", "cause"],
            registry=r,
        )
        self.added_latency = Histogram(
            "botbridge_bridge_added_seconds",
            "Time the bridge adds: receipt to backend call, plus answer to platform accept",
            ["platform"],
            buckets=_ADDED_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge("botbridge_backend_in_flight", "Backend calls under way", registry=r)
        self.queued = Gauge(
            "botbridge_queued", "Accepted messages waiting for their turn", registry=r
        )
        self.sessions = Gauge(
            "botbridge_active_sessions",
            "Sessions with a message queued or being answered",
            registry=r,
        )
        self.tokens = Counter(
            "botbridge_tokens",
            "LLM tokens reported by backends",
            ["backend", "direction"],
            registry=r,
        )
        self.send_retries = Counter(
            "botbridge_platform_send_retries",
            "Platform sends retried",
            ["platform", "reason"],
            registry=r,
        )
        self.adapter_connected = Gauge(
            "botbridge_adapter_connected",
            "1 while the adapter is connected and receiving",
            ["platform"],
            registry=r,
        )

    def message(self, platform: str, outcome: str) -> None:
        self.messages.labels(platform, outcome).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
