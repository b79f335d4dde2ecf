"""A real `botbridge run` (polling) against the fake Bot API and the fake OpenAI server, both in
this process: bursts of DMs from many users released at once (issue 15's scenario). Reports per
burst how many were answered and how fast, the daemon's CPU per answer (from /proc), how many
typing signals were sent, and how many requests the daemon cut off mid-flight (the fake's
"Connection lost": each such cancel can leak a pooled connection, encode/httpcore#1093).

    python -m bench.telegram_daemon --bursts 3 --messages 2000 --users 50
    python -m bench.telegram_daemon --bursts 1 --messages 8 --users 1 --llm-delay 2  # idle CPU
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

import yaml

from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.telegram_api import FakeTelegram, user


class _Count(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lost = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and "Connection lost" in str(record.exc_info[1]):
            self.lost += 1


def _cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def main(args: argparse.Namespace) -> None:
    cut = _Count()
    logging.getLogger("aiohttp.server").addHandler(cut)
    logging.getLogger("aiohttp.server").propagate = False
    async with FakeTelegram() as telegram, FakeOpenAI() as llm:
        state = tempfile.mkdtemp()
        section = {"token": telegram.token, "api_base_url": telegram.base_url,
                   "api_file_url": telegram.file_url, "poll_timeout": 1,
                   "typing_interval": args.typing_interval}  # fmt: skip
        if args.unpaced:
            section["max_sends_per_second"] = 0
        config = {
            "backends": {"main": {"type": "openai", "base_url": llm.base_url, "max_retries": 0}},
            "bridge": {"state_dir": state},
            "http": {"port": _free_port()},
            "adapters": {"telegram": section},
        }
        path = Path(state) / "config.yaml"
        path.write_text(yaml.safe_dump(config))  # small, once, before anything runs
        daemon = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bridge", "run", "-c", str(path),
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            await telegram.wait_for(lambda c: any(x.path.endswith("/getUpdates") for x in c), 30)
            people = [user(100 + n, f"U{n}") for n in range(args.users)]
            for burst in range(args.bursts):
                if args.llm_delay:
                    llm.slow_next(args.llm_delay, times=args.messages)
                before, cpu, started = len(telegram.sent), _cpu(daemon.pid), time.monotonic()
                await telegram.push(*(
                    telegram.dm(people[i % args.users], f"burst {burst} message {i}")
                    for i in range(args.messages)
                ))  # fmt: skip
                try:
                    await telegram.wait_sent(before + args.messages, timeout=args.patience)
                except TimeoutError:
                    pass
                answered = len(telegram.sent) - before
                took = time.monotonic() - started
                per = (_cpu(daemon.pid) - cpu) * 1000 / max(answered, 1)
                print(f"burst {burst}: {answered}/{args.messages} answered in {took:.1f}s, "
                      f"{per:.1f} ms CPU per answer")  # fmt: skip
        finally:
            daemon.send_signal(signal.SIGTERM)
            await daemon.wait()
        typing = len(telegram.api_calls("sendChatAction"))
        print(f"sendChatAction: {typing}; requests cut off mid-flight: {cut.lost}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bursts", type=int, default=3)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--llm-delay", type=float, default=0.0)
    parser.add_argument("--typing-interval", type=float, default=4.0)
    parser.add_argument("--unpaced", action="store_true", help="max_sends_per_second: 0")
    parser.add_argument("--patience", type=float, default=300.0, help="seconds per burst")
    asyncio.run(main(parser.parse_args()))
