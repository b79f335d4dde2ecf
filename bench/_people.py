"""The people on the platform: who asks what and when, and every question's timestamps.

Closed loop (`Load.rate` None): each of S people asks again once answered, until each asked
N // S times. Open loop: questions arrive at `rate` per second over the S people whatever the
answers do. A question is available from just before it is posted; the platform side calls
`Ledger.on_reply` with each answer it receives.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from dataclasses import dataclass, field
from typing import Any

_ID = re.compile(r"q(\d+)\b")


@dataclass
class Load:
    messages: int
    sessions: int
    rate: float | None = None  # None: closed loop
    stall: float = 30.0  # no answer for this long: give up, count the rest lost

    @property
    def mode(self) -> str:
        return f"open loop at {self.rate:g}/s" if self.rate else "closed loop"


@dataclass
class Ledger:
    """Every question's timestamps, and the people who wait for their answers."""

    load: Load
    available: dict[int, float] = field(default_factory=dict)
    replies: dict[int, list[float]] = field(default_factory=dict)
    queue: asyncio.Queue[tuple[int, int]] = field(default_factory=asyncio.Queue)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    progress: float = field(default_factory=time.monotonic)
    _next: int = 0
    _per_person: dict[int, int] = field(default_factory=dict)

    def question(self, person: int) -> tuple[int, int]:
        qid = self._next
        self._next += 1
        self._per_person[person] = self._per_person.get(person, 0) + 1
        return person, qid

    def on_reply(self, text: str, when: float) -> None:
        found = _ID.search(text)
        if found is None:
            return
        qid = int(found.group(1))
        seen = self.replies.setdefault(qid, [])
        seen.append(when)
        if len(seen) > 1:
            return
        self.progress = when
        load = self.load
        if load.rate is None:  # closed loop: this person asks again
            person = qid % load.sessions
            if self._per_person[person] < load.messages // load.sessions:
                self.queue.put_nowait(self.question(person))
        if len(self.replies) >= self.expected:
            self.done.set()

    @property
    def expected(self) -> int:
        load = self.load
        return load.messages if load.rate else (load.messages // load.sessions) * load.sessions


async def _speak(side: Any, ledger: Ledger) -> None:
    """Post each queued question; a question is available from just before it is posted."""
    while True:
        person, qid = await ledger.queue.get()
        ledger.available[qid] = time.monotonic()
        await side.say(person, f"q{qid} what is the answer, person {person}?")


async def _pace(ledger: Ledger) -> None:
    load = ledger.load
    assert load.rate
    start = time.monotonic()
    for i in range(load.messages):
        delay = start + i / load.rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)  # the arrival schedule itself, not synchronisation
        ledger.queue.put_nowait(ledger.question(i % load.sessions))


async def drive(side: Any, ledger: Ledger) -> None:
    """Let the people ask until every answer came, or none came for `load.stall` seconds."""
    load = ledger.load
    tasks = [asyncio.create_task(_speak(side, ledger), name="bench-speak")]
    if load.rate:
        tasks.append(asyncio.create_task(_pace(ledger), name="bench-pace"))
    else:
        person_ids = list(range(load.sessions))
        for person in person_ids:
            ledger.queue.put_nowait(ledger.question(person))
    try:
        while not ledger.done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ledger.done.wait(), 1.0)
            if time.monotonic() - ledger.progress > load.stall:
                break
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
