"""`botbridge run` as an operator runs it: a real subprocess with its one HTTP port, against the fake
Telegram Bot API and the fake OpenAI server. Readiness follows the poller, the metrics count the
traffic, the logs are JSON, and SIGTERM finishes the answer under way before exiting 0."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import yaml

from tests.fakes.base import eventually
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.telegram_api import FakeTelegram, user
from tests.ops.conftest import samples, value

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Daemon:
    def __init__(self, proc: asyncio.subprocess.Process, port: int, log: Path) -> None:
        self.proc = proc
        self.http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5)
        self.log = log

    def lines(self) -> list[str]:
        return self.log.read_text().splitlines()

    async def get(self, path: str) -> httpx.Response | None:
        try:
            return await self.http.get(path)
        except httpx.TransportError:
            return None  # not listening yet

    async def ready(self, expected: bool, timeout: float) -> dict:
        """Poll /readyz until it says `expected`; return its body."""

        async def check():
            response = await self.get("/readyz")
            if response is not None and (response.status_code == 200) is expected:
                return response.json()
            return None

        return await eventually(check, timeout, every=0.05)

    async def metrics(self) -> dict:
        response = await self.http.get("/metrics")
        return samples(response.text)


@asynccontextmanager
async def daemon(
    tmp_path: Path, config: dict, *, role: str = "all", name: str = ""
) -> AsyncIterator[Daemon]:
    """`botbridge run --role ROLE` on `config`; `name` keeps several processes' files apart."""
    port = free_port()
    config = {**config, "http": {"host": "127.0.0.1", "port": port, "watch_interval": 0.2}}
    config.setdefault("bridge", {})["state_dir"] = str(tmp_path / "state")
    path = tmp_path / f"{name}config.yaml"
    path.write_text(yaml.safe_dump(config))
    log = tmp_path / f"{name}stderr.log"
    with log.open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bridge",
            "run",
            "-c",
            str(path),
            "--role",
            role,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=stderr,
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    running = Daemon(proc, port, log)
    try:
        yield running
    finally:
        await running.http.aclose()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def stop(running: Daemon, timeout: float = 10) -> int:
    running.proc.send_signal(signal.SIGTERM)
    return await asyncio.wait_for(running.proc.wait(), timeout)


async def test_with_no_adapter_it_serves_http_warns_and_stops_on_sigterm(tmp_path):
    config = {"backends": {"echo": {"type": "echo"}}, "bridge": {"log_format": "json"}}
    async with daemon(tmp_path, config) as running:
        body = await running.ready(True, 15)
        assert body["components"] == {"store": {"ready": True, "detail": "sqlite"}}
        assert (await running.get("/healthz")).json() == {"status": "ok"}
        page = await running.metrics()
        assert value(page, "botbridge_circuit_state", backend="echo") == 0
        assert await stop(running) == 0

    entries = [json.loads(line) for line in running.lines()]  # every stderr line is JSON
    messages = [e["message"] for e in entries]
    summary = next(m for m in messages if m.startswith("botbridge 0.1.0 running"))
    assert "adapters=none" in summary and "backends=echo (echo)" in summary
    assert f"state={tmp_path / 'state' / 'botbridge.sqlite3'}" in summary
    assert "/healthz" in summary and "/readyz" in summary and "/metrics" in summary
    warning = next(e for e in entries if e["level"] == "warning")
    assert "no adapter is enabled" in warning["message"]
    assert messages[-1] == "stopped"


async def test_a_port_in_use_is_one_error_line_and_exit_1(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = tmp_path / "config.yaml"
        path.write_text(
            yaml.safe_dump(
                {
                    "backends": {"echo": {"type": "echo"}},
                    "bridge": {"state_dir": str(tmp_path)},
                    "http": {"port": port},
                }
            )
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bridge", "run", "-c", str(path),
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1
    assert "could not start: OSError" in err.decode() and "Traceback" not in err.decode()


def telegram_config(telegram: FakeTelegram, llm: FakeOpenAI) -> dict:
    """The daemon's config for the fake Telegram and OpenAI servers, with short timeouts."""
    return {
        "backends": {"main": {"type": "openai", "base_url": llm.base_url, "max_retries": 0}},
        "adapters": {
            "telegram": {
                "token": telegram.token,
                "api_base_url": telegram.base_url,
                "api_file_url": telegram.file_url,
                "poll_timeout": 1,
                "stall_timeout": 2,
                "retry_backoff": 0.05,
                "max_backoff": 0.2,
            }
        },
    }


async def test_telegram_readiness_metrics_and_drain_through_the_daemon(tmp_path):
    async with FakeTelegram() as telegram, FakeOpenAI() as llm:
        config = {**telegram_config(telegram, llm), "bridge": {"drain_timeout": 10}}
        async with daemon(tmp_path, config) as running:
            # Green once a getUpdates round trip completed.
            body = await running.ready(True, 15)
            assert body["components"]["telegram"] == {"ready": True, "detail": "polling"}

            telegram.rate_limit_next("sendMessage", retry_after=1)  # one send is retried
            users = [user(100 + i, f"U{i}") for i in range(10)]
            for i, sender in enumerate(users):
                await telegram.push(telegram.dm(sender, f"question {i}"))
            await telegram.wait_sent(10, timeout=15)
            assert sorted(telegram.texts()) == sorted(f"echo: question {i}" for i in range(10))
            page = await running.metrics()
            count = {
                outcome: value(page, "botbridge_messages_total", platform="telegram", outcome=outcome)
                for outcome in ("received", "answered", "failed")
            }
            assert count == {"received": 10, "answered": 10, "failed": 0}
            ok = value(page, "botbridge_backend_request_seconds_count", backend="main", outcome="ok")
            assert ok == 10
            assert value(page, "botbridge_bridge_added_seconds_count", platform="telegram") == 10
            assert value(page, "botbridge_bridge_added_seconds_sum", platform="telegram") > 0
            assert value(page, "botbridge_adapter_connected", platform="telegram") == 1
            retries = [
                v
                for (name, labels), v in page.items()
                if name == "botbridge_platform_send_retries_total"
                and ("platform", "telegram") in labels
            ]
            assert sum(retries) == 1

            # The fake stops answering getUpdates: red within the stall timeout plus a margin.
            telegram.stalled = True
            body = await running.ready(False, 8)
            assert body["components"]["telegram"]["ready"] is False
            assert "getUpdates" in body["components"]["telegram"]["detail"]
            assert body["components"]["store"]["ready"] is True
            telegram.stalled = False
            await running.ready(True, 10)

            # SIGTERM while an answer is under way: it is delivered, then the process exits 0.
            llm.slow_next(1.0)
            await telegram.push(telegram.dm(users[0], "the last question"))
            await llm.wait_for(lambda calls: len(calls) == 11, 10)
            assert await stop(running, 15) == 0
            assert telegram.texts()[-1] == "echo: the last question"

    log = "\n".join(running.lines())
    assert telegram.token not in log and telegram.token.split(":")[1] not in log
    assert "telegram is not ready" in log and "telegram is ready again" in log


@pytest.mark.parametrize("command", ["run", "console"])
@pytest.mark.parametrize("where", ["state_dir", "store.path"])
async def test_an_unusable_state_location_is_one_line_naming_it_and_exit_1(
    tmp_path, command, where
):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the state directory should be")
    if where == "state_dir":  # its parent is a file: it cannot be created
        bridge, named = {"state_dir": str(blocker / "state")}, str(blocker / "state")
    else:  # a directory where the database file should be
        (tmp_path / "db").mkdir()
        bridge, named = {"store": {"path": str(tmp_path / "db")}}, str(tmp_path / "db")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"backends": {"echo": {"type": "echo"}}, "bridge": bridge,
                                    "http": {"port": 0}}))  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", command, "-c", str(path),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(b"hello\n"), 30)
    lines = err.decode().splitlines()
    assert proc.returncode == 1, err.decode()
    assert len(lines) == 1, err.decode()  # no traceback, no "Event loop is closed"
    assert "could not start" in lines[0] and named in lines[0]
