"""Prometheus metrics, in a registry of their own (no global state: tests build as many as needed).

The router, adapters and backends record through one `Metrics` object passed to them; `/metrics`
renders its registry. Every series an operator alerts on exists from the start (at zero), so a
rate() over it works before the first message.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest

# Bridge-added latency lives in milliseconds territory; backend latency in seconds.
_ADDED_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_BACKEND_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120)

OUTCOMES = (
    "received", "answered", "ignored", "refused", "denied", "rate_limited", "over_budget",
    "failed", "undeliverable", "duplicate",
)  # fmt: skip
# Where the bridge-added time goes: receipt → backend call, backend answer → platform accept.
STAGES = ("to_backend", "to_platform")
CIRCUIT_STATES = {"closed": 0, "open": 1, "half_open": 2}


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.info = Info("botbridge_build", "The running botbridge", registry=r)
        self.messages = Counter(
            "botbridge_messages",
            "Messages by platform and outcome (duplicate: a redelivery dropped)",
            ["platform", "outcome"],
            registry=r,
        )
        self.backend_latency = Histogram(
            "botbridge_backend_request_seconds",
            "Backend answer time, by outcome (ok, error)",
            ["backend", "outcome"],
            buckets=_BACKEND_BUCKETS,
            registry=r,
        )
        self.backend_errors = Counter(
            "botbridge_backend_errors",
            "Backend failures by cause (timeout, rate_limited, unavailable, circuit_open, ...)",
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
        self.added_stage = Histogram(
            "botbridge_bridge_added_stage_seconds",
            "Bridge-added time by stage: to_backend (receipt to backend call), "
            "to_platform (backend answer to platform accept)",
            ["platform", "stage"],
            buckets=_ADDED_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge("botbridge_backend_in_flight", "Backend calls under way", registry=r)
        self.queued = Gauge(
            "botbridge_queued", "Accepted messages waiting for their session's turn", registry=r
        )
        self.waiting_for_slot = Gauge(
            "botbridge_backend_waiting",
            "Messages whose turn came, waiting for one of the max_in_flight backend slots",
            registry=r,
        )
        self.sessions = Gauge(
            "botbridge_active_sessions",
            "Sessions with a message queued or being answered",
            registry=r,
        )
        self.open_sessions = Gauge(
            "botbridge_open_sessions",
            "Sessions with stored backend state (read from the store at each scrape)",
            registry=r,
        )
        self.tokens = Counter(
            "botbridge_tokens",
            "LLM tokens by backend, route, direction (input, output), outcome (answered, "
            "undelivered) and source (reported by the backend, or estimated from characters)",
            ["backend", "route", "direction", "outcome", "source"],
            registry=r,
        )
        self.budget_refusals = Counter(
            "botbridge_budget_refusals",
            "Questions refused because a daily token budget was used up, by scope (person, chat)",
            ["scope", "backend"],
            registry=r,
        )
        self.send_retries = Counter(
            "botbridge_platform_send_retries",
            "Platform sends retried, by reason (rate_limited, network, server_error)",
            ["platform", "reason"],
            registry=r,
        )
        self.adapter_connected = Gauge(
            "botbridge_adapter_connected",
            "1 while the adapter is connected and receiving",
            ["platform"],
            registry=r,
        )
        self.stream_first_text = Histogram(
            "botbridge_stream_first_text_seconds",
            "Streamed answers: time from receiving the question to its first visible text",
            ["platform"],
            buckets=_BACKEND_BUCKETS,
            registry=r,
        )
        self.stream_updates = Counter(
            "botbridge_stream_updates",
            "Updates of streamed answers, by outcome (sent, rate_limited, failed)",
            ["platform", "outcome"],
            registry=r,
        )
        self.streams_resumed = Counter(
            "botbridge_streams_resumed",
            "Streamed answers a crash cut short, finished after the restart in the messages "
            "already shown, by how (asked_again, apology: what was shown plus the apology, "
            "delivered: nothing was missing)",
            ["platform", "how"],
            registry=r,
        )
        self.delivery_retries = Counter(
            "botbridge_delivery_retries",
            "Reply parts that could not be posted for a passing reason and wait to be tried again",
            ["platform"],
            registry=r,
        )
        self.possibly_repeated = Counter(
            "botbridge_possibly_repeated_parts",
            "Reply parts posted again although an earlier attempt may have been posted (a crash "
            "or timeout between the platform accepting a part and the journal recording it, on "
            "a platform that cannot deduplicate)",
            ["platform"],
            registry=r,
        )
        self.reasked = Counter(
            "botbridge_reasked",
            "Questions asked again after a crash to a backend that keeps the conversation "
            "(a second user turn: the API offers no other way)",
            ["backend"],
            registry=r,
        )
        self.recovered = Counter(
            "botbridge_recovered",
            "Pending messages picked up after a restart or from a dead process, by stage",
            ["stage"],
            registry=r,
        )
        self.partitions_held = Gauge(
            "botbridge_partitions_held",
            "Work-queue partitions this worker holds (--role worker)",
            registry=r,
        )
        self.taken_over = Counter(
            "botbridge_taken_over",
            "Unfinished messages a worker claimed from an earlier holder of their partition",
            registry=r,
        )
        self.elected = Gauge(
            "botbridge_elected",
            "1 while this process holds the lease to do a one-per-bot job (the Telegram poller)",
            ["job"],
            registry=r,
        )
        self.circuit_state = Gauge(
            "botbridge_circuit_state",
            "Backend circuit breaker: 0 closed, 1 open (short-circuited), 2 half-open (trying)",
            ["backend"],
            registry=r,
        )

    def describe(
        self, version: str, platforms: Iterable[str] = (), backends: Iterable[str] = ()
    ) -> None:
        """Create the series of a known set of platforms and backends at zero."""
        self.info.info({"version": version})
        for platform in platforms:
            for outcome in OUTCOMES:
                self.messages.labels(platform, outcome)
            for outcome in ("sent", "rate_limited", "failed"):
                self.stream_updates.labels(platform, outcome)
            for how in ("asked_again", "apology", "delivered"):
                self.streams_resumed.labels(platform, how)
            self.adapter_connected.labels(platform)
            self.possibly_repeated.labels(platform)
            self.delivery_retries.labels(platform)
        for backend in backends:
            self.circuit_state.labels(backend).set(0)
            self.reasked.labels(backend)

    def message(self, platform: str, outcome: str) -> None:
        self.messages.labels(platform, outcome).inc()

    def bridge_added(self, platform: str, to_backend: float, to_platform: float) -> None:
        """One answered message: the bridge's own time before and after the backend call."""
        self.added_latency.labels(platform).observe(to_backend + to_platform)
        self.added_stage.labels(platform, "to_backend").observe(to_backend)
        self.added_stage.labels(platform, "to_platform").observe(to_platform)

    def send_retry(self, platform: str, reason: str) -> None:
        self.send_retries.labels(platform, reason).inc()

    def circuit(self, backend: str, state: str) -> None:
        self.circuit_state.labels(backend).set(CIRCUIT_STATES[state])

    def render(self) -> bytes:
        return generate_latest(self.registry)
