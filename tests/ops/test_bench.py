"""The benchmarks still run: each at a tiny size, as an operator would start it, writing JSON
with the figures the README quotes, and every question answered exactly once. Not timed: the
figures themselves are measured by hand (README, Performance), never asserted here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
LATENCY = {"p50", "p90", "p99", "max"}


def bench(module: str, tmp_path: Path, *args: str) -> dict:
    out = tmp_path / "result.json"
    done = subprocess.run(
        [sys.executable, "-m", module, *args, "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
        env={**os.environ, "REDIS_URL": REDIS_URL},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    return json.loads(out.read_text())


def redis_up() -> bool:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError:
        return False
    return True


def assert_e2e_figures(result: dict, messages: int) -> None:
    for key in ("added_latency_ms", "e2e_latency_ms"):
        assert LATENCY <= set(result[key]), key
        assert all(result[key][q] is not None for q in LATENCY), key
    for key in ("messages_per_s", "cpu_s_per_1000", "peak_rss_mb", "limits"):
        assert result[key], key
    assert result["messages"] == messages
    assert (result["lost"], result["duplicates"]) == (0, 0)


def test_e2e_telegram_with_the_floor(tmp_path):
    result = bench("bench.e2e", tmp_path, "--platform", "telegram", "-n", "40", "-s", "8")
    assert_e2e_figures(result, 40)
    assert result["limits"]["max_sends_per_second"] == "none"
    assert result["floor"]["messages"] == 40 and result["floor"]["lost"] == 0
    assert result["fraction_of_floor"] > 0


@pytest.mark.parametrize("platform", ["discord", "slack"])
def test_e2e_other_platforms(tmp_path, platform):
    result = bench("bench.e2e", tmp_path, "--platform", platform, "-n", "20", "-s", "5")
    assert_e2e_figures(result, 20)


def test_e2e_open_loop_on_redis(tmp_path):
    if not redis_up():
        pytest.skip(f"no Redis at {REDIS_URL}")
    result = bench(
        "bench.e2e", tmp_path, "--platform", "telegram", "--store", "redis", "--no-floor",
        "-n", "30", "-s", "6", "--rate", "100",
    )  # fmt: skip
    assert result["mode"] == "open loop at 100/s" and result["store"] == "redis"
    assert_e2e_figures(result, 30)


def test_concurrency(tmp_path):
    result = bench("bench.concurrency", tmp_path, "-n", "60", "--llm-delay", "0.3")
    assert (result["messages"], result["lost"], result["duplicates"]) == (60, 0, 0)
    assert result["time_to_last_answer_s"] >= 0.3  # nobody is answered before the LLM is
    for key in ("peak_rss_mb", "kb_per_waiting_conversation", "cpu_ms_per_answer"):
        assert result[key] is not None, key
    assert {"p50", "p99", "max"} <= set(result["loop_lag_ms"])


def test_store(tmp_path):
    stores = ["sqlite", "redis"] if redis_up() else ["sqlite"]
    result = bench(
        "bench.store", tmp_path, "--stores", *stores, "-n", "50", "-s", "5",
        "--concurrency", "4", "--idle-sessions", "300",
    )  # fmt: skip
    assert [found["store"] for found in result["stores"]] == stores
    for found in result["stores"]:
        assert found["sequence"][0] == "journal.accept"
        assert found["sequential"]["operations_per_s"] > 0
        assert found["concurrent"]["messages_per_s"] > 0
        assert found["idle_session"]["bytes_per_session"] > 0
        assert (
            found["idle_session_with_history"]["bytes_per_session"]
            > found["idle_session"]["bytes_per_session"]
        )
