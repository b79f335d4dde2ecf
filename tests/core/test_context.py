"""The replied-to message as context: how it is marked and cut, when it is left out, and that a
pending message keeps it across a restart."""

from __future__ import annotations

import time

from bridge.context import capped, with_quote
from bridge.types import Addressed, ChatKind, Inbound, Picture, Quote
from tests.conftest import RecordingConsole, lifetime, make_config

BOB = Quote("Bob", "The deploy is on Friday.")


def test_the_quote_goes_before_the_question_marked_with_its_author():
    assert with_quote("right?", BOB, max_chars=1000, keeps_history=True) == (
        "[In reply to Bob: The deploy is on Friday.]\nright?"
    )
    assert with_quote("", BOB, max_chars=1000, keeps_history=False) == (
        "[In reply to Bob: The deploy is on Friday.]"
    )
    nameless = Quote("", "hi")
    assert with_quote("q", nameless, max_chars=100, keeps_history=False) == "[In reply to someone: hi]\nq"


def test_what_the_backend_has_already_is_not_repeated():
    from_bot = Quote("Bridge", "Blue.", from_bot=True)
    own = Quote("Alice", "@bot name a colour", own_question=True)
    for quote in (from_bot, own):
        assert with_quote("another?", quote, max_chars=100, keeps_history=True) == "another?"
    # A backend without history is told, and a reply to the bot is marked as its own words.
    assert with_quote("another?", from_bot, max_chars=100, keeps_history=False) == (
        "[In reply to you: Blue.]\nanother?"
    )


def test_a_long_quote_is_cut_at_a_clean_boundary_within_the_limit():
    text = "One paragraph about the plan.\n\n" + "Details follow here. " * 80
    cut = capped(text, 1000)
    assert len(cut) <= 1000 and cut.endswith(" …")
    assert cut[:-2].endswith(".")  # at a sentence, not inside a word
    assert capped("short", 1000) == "short"
    fenced = "```\n" + "x = 1\n" * 400 + "```"
    assert capped(fenced, 200).count("```") == 1  # no fence added by the cut


def test_control_characters_in_a_quote_are_removed():
    quote = Quote("Bob", "bell\x07 and \x1b[31mred")
    assert with_quote("q", quote, max_chars=100, keeps_history=False) == (
        "[In reply to Bob: bell and [31mred]\nq"
    )


def test_a_pending_message_keeps_its_quote_and_picture_reference():
    inbound = Inbound(
        "telegram", "-100", "42", "right?", ChatKind.GROUP, "7.1",
        quote=Quote("Bob", "Friday", own_question=True),
        picture=Picture("AgAD-file-id", 2048, "image/jpeg", "photo.jpg"),
    )  # fmt: skip
    assert Inbound.from_dict(inbound.to_dict()) == inbound
    stored = inbound.to_dict()
    assert stored["picture"] == {"ref": "AgAD-file-id", "size": 2048, "mime": "image/jpeg",
                                 "name": "photo.jpg"}  # a reference, never bytes  # fmt: skip
    # A payload stored before these fields existed still reads.
    old = {k: v for k, v in stored.items() if k not in ("quote", "picture")}
    assert Inbound.from_dict(old).quote is None


async def test_a_quote_accepted_before_a_crash_is_still_passed_on_after_it(openai_fake, tmp_path):
    cfg = make_config(
        {
            "backends": {"main": {"type": "openai", "base_url": openai_fake.base_url}},
            "bridge": {"store": {"path": str(tmp_path / "s.sqlite3")}, "drain_timeout": 0.1},
        }
    )
    openai_fake.slow_next(30)  # the first run never gets its answer
    first = RecordingConsole(user="alice")
    async with lifetime(cfg, first):
        await first.deliver(
            Inbound("console", "team", "alice", "is that right?", ChatKind.GROUP, "evt-q1",
                    message_id="1", addressed=Addressed.MENTION, quote=BOB,
                    received_at=time.time())
        )  # fmt: skip
        await openai_fake.wait_for(lambda calls: calls)
    # Stopped before the answer came: the message stayed pending.
    second = RecordingConsole(user="alice")
    async with lifetime(cfg, second):
        await second.replies(1)
    contents = [c.json["messages"][-1]["content"] for c in openai_fake.calls]
    assert contents == ["[In reply to Bob: The deploy is on Friday.]\nis that right?"] * 2
