"""The terminal as a platform: be a DM user (or a user in a group) of the bridge.

Every line of stdin is one message; every answer is printed to stdout. Reading happens on a daemon
thread (stdin may be a terminal, a pipe or a file, and none of them blocks the event loop); with
`pace` set, the next line is handed over only once the bridge has answered the last one, so that
nothing piles up unanswered. `finished` is set when input ends (every line handed to the router)
or when stdout's reader went away (`| head -1`): then nothing more is read or printed.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import TextIO

from bridge.adapter import Deliver, Health, HttpRoute
from bridge.errors import PictureUnavailable
from bridge.types import Addressed, ChatKind, Inbound, Limits, Outbound, Picture


class ConsoleAdapter:
    platform = "console"
    limits = Limits(max_len=100_000)
    dedup_window = 0.0  # a line printed twice cannot be taken back

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
        self._printed = itertools.count(1)
        self._run_id = f"{os.getpid()}-{time.time_ns()}"
        self._task: asyncio.Task[None] | None = None
        self._deliver: Deliver | None = None
        self.finished = asyncio.Event()
        self.output_closed = False
        # Awaited after each line is handed over (the router's `idle`): None hands them all on.
        self.pace: Callable[[], Awaitable[object]] | None = None

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
            while (line := await lines.get()) is not None and not self.output_closed:
                await self.say(line.rstrip("\r\n"))
                if self.pace is not None:
                    await self.pace()
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

    async def send(self, outbound: Outbound) -> str:
        self._print(outbound.text)
        return str(next(self._printed))

    def _print(self, text: str) -> None:
        if self.output_closed:
            return  # the reader is gone: there is no one to show it to
        try:
            self._stdout.write(text + "\n")
            self._stdout.flush()
        except BrokenPipeError:
            self._reader_gone()

    def _reader_gone(self) -> None:
        """stdout's reader closed the pipe: stop reading and printing, quietly."""
        self.output_closed = True
        self.finished.set()
        try:
            # Python flushes stdout once more at exit: point it at /dev/null so that flush
            # does not print "Exception ignored … BrokenPipeError".
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stdout.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):
            pass  # not a real file (a test's StringIO): nothing will flush it at exit

    def working(self, inbound: Inbound) -> AbstractAsyncContextManager[None]:
        return nullcontext()

    async def fetch_picture(self, picture: Picture, max_bytes: int) -> bytes:
        raise PictureUnavailable("the console sends no pictures")

    def live(self, inbound: Inbound) -> None:
        return None  # a terminal prints each answer whole

    def health(self) -> Health:
        return Health(ready=True, detail="reading stdin")

    async def probe(self) -> str:
        return "console"
