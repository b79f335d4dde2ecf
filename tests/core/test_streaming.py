"""The platform-neutral side of streamed answers, against a scripted live message: what the user
sees while the model writes, and the final parts, whatever the platform does to the updates."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest

from bridge.config import StreamingSettings
from bridge.errors import Timeout, Unavailable
from bridge.metrics import Metrics
from bridge.streaming import StreamedReply, Throttled, UpdateFailed
from bridge.text import clean, split
from bridge.types import Answer, Limits

APOLOGY = "Sorry, no more just now."


class ScriptedLive:
    """A live message that records every update; `throttle` and `failing` script refusals."""

    def __init__(self, *, refresh: float | None = None, **settings) -> None:
        defaults = {"min_chars": 10, "min_interval": 0.05, "idle_timeout": 5.0}
        self.settings = StreamingSettings(**{**defaults, **settings})
        self.refresh = refresh
        self.events: list[tuple[str, str, float]] = []  # (show|seal, text, monotonic time)
        self.throttle: list[float] = []  # retry_after of the next shows' 429s
        self.failing = False
        self.closed = False

    async def show(self, text: str) -> None:
        if self.throttle:
            self.events.append(("throttled", text, time.monotonic()))
            raise Throttled(self.throttle.pop(0))
        if self.failing:
            raise UpdateFailed("refused")
        self.events.append(("show", text, time.monotonic()))

    async def seal(self, part: str) -> list[str]:
        self.events.append(("seal", part, time.monotonic()))
        return [f"m{len(self.events)}"]

    async def close(self) -> None:
        self.closed = True

    def of(self, kind: str) -> list[str]:
        return [text for what, text, _ in self.events if what == kind]


class Model:
    """A backend stream: `text` in chunks at a pace, then the Answer; `hang_after` chunks it
    goes silent; `fail` raises before the first chunk."""

    def __init__(self, text: str, *, chunk: int = 5, pace: float = 0.005, hang_after=None):
        self.text, self.chunk, self.pace, self.hang_after = text, chunk, pace, hang_after
        self.finished: float | None = None

    async def __call__(self) -> AsyncIterator[str | Answer]:
        for number, start in enumerate(range(0, len(self.text), self.chunk)):
            if self.hang_after is not None and number >= self.hang_after:
                await asyncio.Event().wait()
            await asyncio.sleep(self.pace)  # the model's pace, not synchronisation
            yield self.text[start : start + self.chunk]
        self.finished = time.monotonic()
        yield Answer(self.text)


def reply(live, *, limit: int = 4000, working=None, metrics=None) -> StreamedReply:
    return StreamedReply(
        live,
        limits=Limits(max_len=limit),
        apology=APOLOGY,
        empty="(empty)",
        working=working or contextlib.nullcontext(),
        metrics=metrics or Metrics(),
        platform="test",
        started=time.monotonic(),
        clock=time.monotonic,
    )


PROSE = " ".join(f"Sentence number {i} says something." for i in range(400))  # ~14,000 chars


async def test_text_shows_while_the_model_is_still_writing_and_ends_as_one_part():
    live = ScriptedLive()
    model = Model("The answer to everything is forty-two, as is well known. " * 4, pace=0.01)
    streamed = await reply(live).run(model())
    shows = live.of("show")
    assert shows and live.events[0][2] < model.finished  # visible before the model finished
    assert all(clean(model.text).startswith(s) for s in shows)  # each shows all text so far
    assert live.of("seal") == [clean(model.text)]
    assert streamed.answer == Answer(model.text) and streamed.parts == 1
    assert live.closed


async def test_a_long_answer_seals_exactly_the_parts_a_whole_answer_has():
    live = ScriptedLive(min_chars=200)
    model = Model(PROSE, chunk=37, pace=0.0005)
    await reply(live, limit=1000).run(model())
    assert live.of("seal") == split(PROSE, 1000)
    assert len(live.of("seal")) >= 14
    # Every preview belongs to the part being written at that moment and fits one message.
    assert all(len(text) <= 1000 for text in live.of("show"))


async def test_a_429_delays_the_next_update_and_nothing_is_lost():
    live = ScriptedLive()
    live.throttle = [0.4]
    model = Model("word " * 200, pace=0.005)
    await reply(live).run(model())
    throttled_at = next(t for kind, _, t in live.events if kind == "throttled")
    after = [t for kind, _, t in live.events if kind in ("show", "seal") and t > throttled_at]
    assert after and after[0] - throttled_at >= 0.39
    assert live.of("seal") == [clean(model.text)]


async def test_the_final_text_arrives_even_when_every_update_failed():
    live = ScriptedLive()
    live.failing = True
    model = Model(PROSE[:3000], chunk=50, pace=0.001)
    metrics = Metrics()
    await reply(live, limit=700, metrics=metrics).run(model())
    assert live.of("show") == []
    assert live.of("seal") == split(PROSE[:3000], 700)
    failed = metrics.registry.get_sample_value(
        "botbridge_stream_updates_total", {"platform": "test", "outcome": "failed"}
    )
    assert failed and failed >= 1


async def test_think_never_shows_even_split_into_single_characters():
    live = ScriptedLive(min_chars=1, min_interval=0.05)
    text = "<think>I should not reveal SECRET plans</think>The plain answer, at last. " * 3
    await reply(live).run(Model(text, chunk=1, pace=0.002)())
    for _, shown, _ in live.events:
        assert "SECRET" not in shown and "think" not in shown.lower()
    assert live.of("seal") == [clean(text)]


async def test_reasoning_before_a_lone_closing_tag_is_replaced_by_the_answer():
    live = ScriptedLive(min_chars=5)
    model = Model("Let me think about it for a while. </think>Forty-two.", chunk=4, pace=0.01)
    await reply(live).run(model())
    assert live.of("seal") == ["Forty-two."]


async def test_a_stall_ends_with_what_arrived_plus_the_apology():
    live = ScriptedLive(idle_timeout=0.3)
    model = Model("First words arrive, then nothing more. " * 3, hang_after=6)
    streamed = await reply(live).run(model())
    assert isinstance(streamed.failure, Timeout) and streamed.answer is None
    [final] = live.of("seal")
    assert final == clean(model.text[:30]) + "\n\n" + APOLOGY


async def test_a_failure_before_any_text_is_the_callers_to_apologise_for():
    live = ScriptedLive()

    async def broken() -> AsyncIterator[str | Answer]:
        raise Unavailable("HTTP 503")
        yield "never"

    with pytest.raises(Unavailable):
        await reply(live).run(broken())
    assert live.events == [] and live.closed


async def test_a_draft_is_refreshed_while_the_model_pauses():
    live = ScriptedLive(refresh=0.1)

    async def pausing() -> AsyncIterator[str | Answer]:
        yield "A first sentence that shows at once."
        await asyncio.sleep(0.6)  # the model's pause
        yield Answer("A first sentence that shows at once.")

    await reply(live).run(pausing())
    assert live.of("show").count("A first sentence that shows at once.") >= 3


async def test_the_working_signal_stops_when_the_first_text_shows():
    live = ScriptedLive()
    stopped: list[float] = []

    @contextlib.asynccontextmanager
    async def working():
        try:
            yield
        finally:
            stopped.append(time.monotonic())

    model = Model("Some words to show early on. " * 20, pace=0.01)
    await reply(live, working=working()).run(model())
    assert len(stopped) == 1 and stopped[0] < model.finished
