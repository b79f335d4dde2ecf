"""The terminal as a platform: be a DM user (or a user in a group) of the bridge.

Every line of stdin is one message; every answer is printed to stdout. Reading happens on a daemon
thread (stdin may be a terminal, a pipe or a file, and none of them blocks the event loop); when
input ends, `finished` is set once every line has been handed to the router.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
import threading
import time
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import TextIO

from bridge.adapter import Deliver, Health, HttpRoute
from bridge.types import Addressed, ChatKind, Inbound, Limits, Outbound


class ConsoleAdapter:
    platform = "console"
    limits = Limits(max_len=100_000)

    def __init__(
        self,
        *,
        user: str = "local",
        group: str | None = None,
        stdin: TextIO | None = None,
        stdout: TextIO | None = None,
        interactive: bool | None = None,
    ) -> None:
        self.user = user
        self.group = group
        self._stdin = stdin or sys.stdin
        self._stdout = stdout or sys.stdout
        self._interactive = self._stdin.isatty() if interactive is None else interactive
        self._ids = itertools.count(1)
        self._run_id = f"{os.getpid()}-{time.time_ns()}"
        self._task: asyncio.Task[None] | None = None
        self._deliver: Deliver | None = None
        self.finished = asyncio.Event()

    def routes(self) -> Sequence[HttpRoute]:
        return ()

    async def start(self, deliver: Deliver | None) -> None:
        lines: asyncio.Queue[str | None] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        def read() -> None:
            try:
                for line in self._stdin:
                    loop.call_soon_threadsafe(lines.put_nowait, line)
            finally:
                loop.call_soon_threadsafe(lines.put_nowait, None)

        self._deliver = deliver
        threading.Thread(target=read, name="console-stdin", daemon=True).start()
        self._task = asyncio.create_task(self._pump(lines), name="console")
        if self._interactive:
            where = f"group {self.group}" if self.group else "a DM"
            self._print(
                f"botbridge console: you are {self.user} in {where}. /help for help, Ctrl-D quits."
            )

    async def _pump(self, lines: asyncio.Queue[str | None]) -> None:
        try:
            while (line := await lines.get()) is not None:
                await self.say(line.rstrip("\r\n"))
        finally:
            self.finished.set()

    async def say(
        self,
        text: str,
        *,
        user: str | None = None,
        group: str | None = None,
        event_id: str | None = None,
    ) -> bool:
        """Send `text` to the bridge as `user` (default: the console's), in `group` if given."""
        if self._deliver is None:
            raise RuntimeError("console adapter is not started")
        user = user or self.user
        group = group if group is not None else self.group
        number = str(next(self._ids))
        inbound = Inbound(
            platform=self.platform,
            chat_id=group or user,
            sender_id=user,
            sender_name=user,
            text=text,
            kind=ChatKind.GROUP if group else ChatKind.DM,
            # In a group every line counts as addressed to the bot.
            addressed=Addressed.MENTION if group else Addressed.DM,
            event_id=event_id or f"{self._run_id}-{number}",
            message_id=number,
            received_at=time.time(),
        )
        return await self._deliver(inbound)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def send(self, outbound: Outbound) -> None:
        for part in outbound.parts:
            self._print(part)

    def _print(self, text: str) -> None:
        self._stdout.write(text + "\n")
        self._stdout.flush()

    def working(self, inbound: Inbound) -> AbstractAsyncContextManager[None]:
        return nullcontext()

    def health(self) -> Health:
        return Health(ready=True, detail="reading stdin")

    async def probe(self) -> str:
        return "console"
