"""What every backend's tests share: the fault scenes and `botbridge check` run as an operator would.

A fault scene injects one fault into a backend's fake, checks that the user gets the apology and the
log names the cause, clears the fault, and checks that the next message is answered.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
import yaml

from bridge.config import DEFAULT_APOLOGY
from tests.conftest import RecordingConsole
from tests.fakes.base import FakeServer

ROOT = Path(__file__).resolve().parents[2]

# (fault, the cause the router logs). Tests configure timeout ~0.3 s and one quick retry.
FAULTS = [
    pytest.param("slow", "cause=timeout", id="slow-beyond-timeout"),
    pytest.param("429", "cause=rate_limited", id="429-retry-after-too-long"),
    pytest.param("5xx", "cause=unavailable", id="500"),
    pytest.param("drop", "cause=unavailable", id="dropped-connection"),
    pytest.param("malformed", "cause=bad_response", id="malformed-body"),
]
FAST = {"timeout": 0.3, "connect_timeout": 0.3, "max_retries": 1, "retry_backoff": 0.01}


def inject(server: FakeServer, fault: str, path: str | None = None) -> None:
    if fault == "slow":
        server.slow_next(1.0, times=10, path=path)
    elif fault == "429":
        # Longer than max_retry_wait: the bridge gives up instead of holding the session.
        server.fail_next(429, retry_after=120, times=10, path=path)
    elif fault == "5xx":
        server.fail_next(500, times=10, path=path, body={"detail": "engine exploded"})
    elif fault == "drop":
        server.drop_next(times=10, path=path)
    elif fault == "malformed":
        server.malformed_next(times=10, path=path)


async def apology_then_recovery(
    server: FakeServer,
    console: RecordingConsole,
    caplog: pytest.LogCaptureFixture,
    fault: str,
    cause: str,
    path: str | None = None,
) -> None:
    inject(server, fault, path)
    await console.say("first")
    assert await console.replies(1) == [DEFAULT_APOLOGY]
    failure = [r.getMessage() for r in caplog.records if "backend failed" in r.getMessage()]
    assert len(failure) == 1 and cause in failure[0]
    if fault == "5xx":
        assert "engine exploded" in failure[0]
    server.faults.clear()
    await console.say("second")
    replies = await console.replies(2)
    assert replies[1] == "echo: second", replies


async def run_check(tmp_path: Path, backends: dict, env: dict[str, str]) -> tuple[int, str]:
    """`botbridge check -c file` in a child process (it runs its own event loop) while the fakes
    keep serving here; returns the exit status and everything it printed."""
    path = tmp_path / "config.yaml"
    raw = {"backends": backends, "bridge": {"store": {"path": ":memory:"}}}
    if len(backends) > 1:
        raw["bridge"]["default_backend"] = next(iter(backends))
    path.write_text(yaml.safe_dump(raw))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge",
        "check",
        "-c",
        str(path),
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode or 0, out.decode()


def row(output: str, component: str) -> str:
    """The line of `botbridge check` output for one component."""
    [line] = [line for line in output.splitlines() if line.startswith(component + " ")]
    return line
