"""Operator mistakes with the real `botbridge` processes: a second daemon, or the console, on a
state file a running daemon owns is refused at once, naming the file and the other process."""

from __future__ import annotations

import asyncio
import sys

from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.telegram_api import FakeTelegram, user
from tests.ops.test_daemon import ROOT, daemon, stop, telegram_config


async def run(*args: str, stdin: bytes = b"", timeout: float = 30) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", *args, cwd=ROOT,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    assert proc.returncode is not None
    return proc.returncode, err.decode()


async def test_a_second_daemon_or_the_console_on_a_running_daemons_state_is_refused(tmp_path):
    async with FakeTelegram() as telegram, FakeOpenAI() as llm:
        config = telegram_config(telegram, llm)
        async with daemon(tmp_path, config) as first:
            await first.ready(True, 15)
            state = tmp_path / "state" / "botbridge.sqlite3"

            code, err = await run("run", "-c", str(tmp_path / "config.yaml"))
            assert code == 1
            assert f"{state} is in use by process {first.proc.pid}" in err
            assert "Traceback" not in err

            code, err = await run(
                "console", "-c", str(tmp_path / "config.yaml"), stdin=b"hello\n"
            )
            assert code == 1 and f"process {first.proc.pid}" in err and "Traceback" not in err

            # The first daemon never noticed: it still answers.
            await telegram.push(telegram.dm(user(42, "Alice"), "still yours?"))
            await telegram.wait_sent(1, timeout=15)
            assert await stop(first) == 0
    assert telegram.texts() == ["echo: still yours?"]
