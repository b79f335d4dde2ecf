"""What /metrics tells an operator after real traffic: counts by outcome, backend latency and
errors, the bridge's own latency by stage, queues, and each backend's circuit."""

from __future__ import annotations

from bridge.breaker import CircuitBreaker
from bridge.errors import CircuitOpen
from tests.conftest import RecordingConsole, make_config
from tests.fakes.base import eventually
from tests.ops.conftest import samples, value


def config(server, bridge: dict | None = None) -> dict:
    backend = {"type": "openai", "base_url": server.base_url, "max_retries": 0}
    return {"backends": {"main": backend}, "bridge": bridge or {}}


async def test_traffic_shows_up_by_outcome_with_latency_samples(openai_fake, running):
    console = RecordingConsole(user="ann")
    bridge = await running(make_config(config(openai_fake)), console)
    for i in range(3):
        await console.say(f"question {i}", user=f"u{i}")
    await console.say("question 0", user="u0", event_id="same")
    await console.say("question 0", user="u0", event_id="same")  # a redelivery
    await console.say("chatter", user="u9", group="team", event_id="x")  # group: addressed
    await console.replies(5)
    await bridge.router.idle(5)

    page = samples(bridge.metrics.render().decode())
    assert value(page, "botbridge_messages_total", platform="console", outcome="received") == 6
    assert value(page, "botbridge_messages_total", platform="console", outcome="answered") == 5
    assert value(page, "botbridge_messages_total", platform="console", outcome="duplicate") == 1
    assert value(page, "botbridge_messages_total", platform="console", outcome="failed") == 0
    ok = value(page, "botbridge_backend_request_seconds_count", backend="main", outcome="ok")
    assert ok == 5
    for stage in ("to_backend", "to_platform"):
        count = value(
            page, "botbridge_bridge_added_stage_seconds_count", platform="console", stage=stage
        )
        assert count == 5, stage
    assert value(page, "botbridge_bridge_added_seconds_count", platform="console") == 5
    assert 0 < value(page, "botbridge_bridge_added_seconds_sum", platform="console") < 1
    tokens = {"backend": "main", "route": "default", "outcome": "answered", "source": "reported"}
    assert value(page, "botbridge_tokens_total", direction="input", **tokens) == 35
    assert value(page, "botbridge_circuit_state", backend="main") == 0
    assert value(page, "botbridge_build_info", version="0.1.0") == 1


async def test_in_flight_and_waiting_gauges_follow_a_slow_backend(openai_fake, running):
    console = RecordingConsole(user="ann")
    bridge = await running(make_config(config(openai_fake, {"max_in_flight": 1})), console)
    metrics = bridge.metrics
    openai_fake.slow_next(0.5)
    await console.say("slow one", user="a")
    await console.say("waits for a slot", user="b")
    await console.say("waits for its turn", user="a")

    def gauges() -> tuple[float, float, float]:
        page = samples(metrics.render().decode())
        return (
            value(page, "botbridge_backend_in_flight"),
            value(page, "botbridge_backend_waiting"),
            value(page, "botbridge_queued"),
        )

    await eventually(lambda: gauges() == (1, 1, 1), 2)
    await console.replies(3)
    await bridge.router.idle(5)
    assert gauges() == (0, 0, 0)


async def test_failing_backend_is_short_circuited_and_the_user_hears_at_once(
    openai_fake, running
):
    settings = {"breaker_threshold": 2, "breaker_cooldown": 60, "apology": "Sorry!"}
    console = RecordingConsole(user="ann")
    bridge = await running(make_config(config(openai_fake, settings)), console)
    openai_fake.fail_next(503, times=2)
    for i in range(3):
        await console.say(f"try {i}")
        await console.replies(i + 1)
    assert console.texts() == ["Sorry!"] * 3
    assert len(openai_fake.calls_to("/v1/chat/completions")) == 2  # the third never left

    page = samples(bridge.metrics.render().decode())
    assert value(page, "botbridge_circuit_state", backend="main") == 1
    assert value(page, "botbridge_backend_errors_total", backend="main", cause="unavailable") == 2
    assert value(page, "botbridge_backend_errors_total", backend="main", cause="circuit_open") == 1
    report = await bridge.readiness()
    assert report["backends"] == {"main": {"circuit": "open"}}
    assert report["ready"] is True  # an open circuit does not take the process out of service


def test_breaker_half_opens_after_the_cool_down_and_closes_on_success():
    now = [100.0]
    states: list[str] = []
    breaker = CircuitBreaker("main", 3, 10.0, clock=lambda: now[0], on_change=states.append)
    for _ in range(2):
        breaker.acquire()
        breaker.failed()
    breaker.acquire()
    breaker.succeeded()  # an answer resets the count: failures must be in a row
    for _ in range(3):
        breaker.acquire()
        breaker.failed()
    assert breaker.state == "open"
    try:
        breaker.acquire()
        raise AssertionError("an open circuit let a call through")
    except CircuitOpen as exc:
        assert 9.9 < exc.retry_in <= 10
    now[0] += 10
    breaker.acquire()  # the one trial
    assert breaker.state == "half_open"
    try:
        breaker.acquire()
        raise AssertionError("a second call went through while the trial runs")
    except CircuitOpen:
        pass
    breaker.failed()  # the trial failed: another full cool-down
    now[0] += 9
    try:
        breaker.acquire()
        raise AssertionError("opened again, but let a call through")
    except CircuitOpen:
        pass
    now[0] += 1
    breaker.acquire()
    breaker.succeeded()
    assert states == ["open", "half_open", "open", "half_open", "closed"]


def test_breaker_with_threshold_zero_never_opens():
    breaker = CircuitBreaker("main", 0, 10.0)
    for _ in range(50):
        breaker.acquire()
        breaker.failed()
    assert breaker.state == "closed"


def test_a_cancelled_trial_frees_the_half_open_slot():
    now = [0.0]
    breaker = CircuitBreaker("main", 1, 1.0, clock=lambda: now[0])
    breaker.acquire()
    breaker.failed()
    now[0] = 5
    breaker.acquire()
    breaker.released()  # shutdown cancelled the trial: the next message may try again
    breaker.acquire()
    assert breaker.state == "half_open"
