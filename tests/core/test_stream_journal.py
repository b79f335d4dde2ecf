"""A streamed answer in the journal: what it shows is recorded as it grows (SQLite and Redis, the
Redis write fenced by the owner check like every other), and a message a crash left mid-stream is
finished in the messages the user already has."""

from __future__ import annotations

import json

import pytest

from bridge.errors import NotOwner
from bridge.journal import Outcome, Reply, Shown, Stage
from bridge.store.sqlite import SqliteStore
from bridge.stream_journal import Recorder, after_shown, asks_again, finish, into_shown
from tests.core.test_ownership import redis_stores  # noqa: F401  (a fixture)
from tests.core.test_store import dm, store, stores  # noqa: F401  (fixtures)
from tests.fakes.base import eventually

GROWING = Shown(("part one",), ("m-1",), live="m-2", text="part two so f")


async def test_what_a_stream_shows_survives_a_restart_and_its_reply_continues_after_it(
    stores,  # noqa: F811
):
    store = await stores.open()  # noqa: F811
    journal = store.journal
    await journal.accept("e", dm(1), ttl=60)
    await journal.asked("e", "wx:dm:tg.1", "main")
    await journal.streaming("e", Shown(live="m-1", text="part one so far"))
    await journal.streaming("e", GROWING)  # each record replaces the last

    store = await stores.restart()
    [entry] = await store.journal.pending()
    assert entry.stage is Stage.ASKED and entry.stream == GROWING

    # Finished after the restart: part 0 is on the platform already, part 1 replaces m-2.
    reply = after_shown(GROWING, Reply(("part two so f\n\nSorry.",), "apology"))
    assert reply == Reply(
        ("part one", "part two so f\n\nSorry."), "apology", posted=("m-1",), edit="m-2"
    )
    assert await store.journal.answered("e", reply, None) is not None  # part 1 "sending"
    with pytest.raises(NotOwner):
        await store.journal.streaming("e", GROWING)  # answered: no stream record any more
    store = await stores.restart()
    [entry] = await store.journal.pending()
    assert entry.reply == reply and entry.sent == ("m-1",) and entry.next_part == 1
    await store.journal.sent("e", 1, "m-2")  # continues at part 1, never part 0 again
    await store.journal.complete("e", Outcome.APOLOGY)
    if isinstance(store, SqliteStore):
        rows = await store.db.execute_fetchall("SELECT * FROM events")
        assert "part two" not in json.dumps(rows)  # the text leaves once delivered


async def test_a_stream_record_is_refused_unless_the_message_is_asked(store):  # noqa: F811
    with pytest.raises(NotOwner):
        await store.journal.streaming("never-accepted", GROWING)
    await store.journal.accept("e", dm(1), ttl=60)
    with pytest.raises(NotOwner):
        await store.journal.streaming("e", GROWING)  # not asked yet


async def test_a_stale_owner_cannot_record_over_its_successor(redis_stores):  # noqa: F811
    slow, successor = await redis_stores(), await redis_stores()
    await slow.journal.accept("e1", dm(1), ttl=60)
    await slow.journal.asked("e1", "k", "main")
    await slow.journal.streaming("e1", GROWING)
    assert slow._keeper is not None
    await slow._keeper.stop(release=False)  # a stall: the lease lapses, the process lives on
    [entry] = await eventually(successor.journal.pending, 5, every=0.05)
    assert entry.stream == GROWING
    with pytest.raises(NotOwner):
        await slow.journal.streaming("e1", Shown(text="written by a stale process"))


async def test_a_recorder_writes_a_new_message_at_once_and_text_at_most_every_interval():
    written: list[Shown] = []
    now = [0.0]

    async def write(shown: Shown) -> None:
        written.append(shown)

    recorder = Recorder(write, interval=3.0, clock=lambda: now[0])
    await recorder.showing("m-1", "Hel")  # a message appeared: at once
    now[0] = 1.0
    await recorder.showing("m-1", "Hello")  # too soon
    now[0] = 3.5
    await recorder.showing("m-1", "Hello there")
    await recorder.sealed("Hello there, all.", ["m-1"], last=False)  # finished: at once
    await recorder.posting("Next part")  # posted anew: marked before
    await recorder.sealed("Next part", ["m-3", "m-4"], last=True)
    assert written == [
        Shown(live="m-1", text="Hel"),
        Shown(live="m-1", text="Hello there"),
        Shown(("Hello there, all.",), ("m-1",)),
        Shown(("Hello there, all.",), ("m-1",), text="Next part", posting=True),
        Shown(("Hello there, all.", "Next part"), ("m-1", "m-3,m-4"), done=True),
    ]


async def test_a_failed_record_never_costs_the_answer_but_a_lost_claim_stops_it():
    async def broken(shown: Shown) -> None:
        raise OSError("disk full")

    await Recorder(broken, interval=1, clock=lambda: 0.0).showing("m", "text")  # logged only

    async def taken(shown: Shown) -> None:
        raise NotOwner("another process has it")

    with pytest.raises(NotOwner):
        await Recorder(taken, interval=1, clock=lambda: 0.0).showing("m", "text")


def test_asked_again_only_where_harmless_and_before_anything_was_final():
    growing = Shown(live="m-1", text="so far")
    assert asks_again(True, growing)
    assert not asks_again(False, growing)  # the server keeps the conversation
    assert not asks_again(True, GROWING)  # a part is final: a new answer cannot continue it
    assert not asks_again(True, Shown(("all",), ("m-1",), done=True))
    again = into_shown(Reply(("the new answer",)), growing)
    assert again == Reply(("the new answer",), edit="m-1")
    # Every part delivered before the crash: nothing left to post, no apology.
    delivered = after_shown(Shown(("a", "b"), ("m-1", "m-2"), done=True), None)
    assert delivered == Reply(("a", "b"), posted=("m-1", "m-2"))


async def test_a_failed_second_call_keeps_what_was_shown_and_apologises():
    growing = Shown(live="m-1", text="so far")
    asked: list[str] = []

    async def ask_again(kind: str) -> Reply:
        asked.append(kind)
        return Reply(("the new answer",) if kind == "answer" else ("Sorry.",), kind)

    async def apologise(text: str) -> Reply:
        return Reply((f"{text}\n\nSorry.",), "apology")

    async def finish_with(shown: Shown, stateless: bool, kind: str = "answer"):
        return await finish(shown, stateless=stateless, ask_again=lambda: ask_again(kind),
                            apologise=apologise)  # fmt: skip

    assert await finish_with(growing, True) == (
        "asked_again", Reply(("the new answer",), edit="m-1")
    )
    assert await finish_with(growing, True, "apology") == (
        "apology", Reply(("so far\n\nSorry.",), "apology", edit="m-1")
    )
    assert await finish_with(growing, False) == (
        "apology", Reply(("so far\n\nSorry.",), "apology", edit="m-1")
    )
    assert asked == ["answer", "apology"]  # never asked where the server keeps the conversation
