"""Pictures: judged by their bytes, refused before a download when the platform says enough, and
fetched again by reference after a restart."""

from __future__ import annotations

import logging
import time

import pytest

from bridge.errors import PictureNotSupported, PictureTooLarge
from bridge.pictures import Capped, checked, precheck, sniff
from bridge.types import ChatKind, Inbound, Picture
from tests.conftest import RecordingConsole, lifetime, make_config
from tests.fakes.pictures import JPEG, PDF, PNG

GIF = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 24


def test_the_type_is_judged_by_the_bytes():
    assert [sniff(d[:12]) for d in (JPEG, PNG, GIF, WEBP, PDF, b"RIFF\0\0\0\0WAVE")] == [
        "image/jpeg", "image/png", "image/gif", "image/webp", None, None,
    ]  # fmt: skip
    assert checked(PNG, 1000).mime == "image/png"
    with pytest.raises(PictureNotSupported):
        checked(PDF, 1000)
    with pytest.raises(PictureTooLarge):
        checked(PNG, len(PNG) - 1)


def test_what_the_platform_states_refuses_before_any_download():
    precheck(Picture("r", 1000, "image/png"), 1000)
    precheck(Picture("r", None, None), 1000)  # nothing stated: judged while downloading
    with pytest.raises(PictureTooLarge, match="1,001 bytes; the limit is 1,000"):
        precheck(Picture("r", 1001, "image/png"), 1000)
    with pytest.raises(PictureNotSupported):
        precheck(Picture("r", 10, "image/tiff"), 1000)
    precheck(Picture("r", 10, "image/JPEG; charset=binary"), 1000)


def test_a_streamed_download_stops_at_the_limit_or_at_bytes_that_are_no_picture():
    capped = Capped(100)
    capped.add(PNG[:5])
    capped.add(PNG[5:40])
    with pytest.raises(PictureTooLarge):
        capped.add(b"\x00" * 70)
    wrong = Capped(10_000)
    with pytest.raises(PictureNotSupported):
        wrong.add(PDF[:64])
    small = Capped(1000)
    for byte in PNG[:20]:  # the type is judged once 12 bytes are in, however they arrive
        small.add(bytes([byte]))
    assert small.data() == PNG[:20]


def picture_message(event_id: str, ref: str, size: int | None = None) -> Inbound:
    return Inbound("console", "alice", "alice", "what is it?", ChatKind.DM, event_id,
                   message_id="1", unsupported="a picture", received_at=time.time(),
                   picture=Picture(ref, size, "image/png", "cat.png"))  # fmt: skip


async def test_a_picture_pending_at_a_crash_is_fetched_again_after_it(openai_fake, tmp_path):
    cfg = make_config(
        {
            "backends": {"main": {"type": "openai", "base_url": openai_fake.base_url,
                                  "vision": True}},
            "bridge": {"store": {"path": str(tmp_path / "s.sqlite3")}, "drain_timeout": 0.1},
        }
    )  # fmt: skip
    openai_fake.slow_next(30)
    first = RecordingConsole(user="alice")
    first.pictures["cat-1"] = PNG
    async with lifetime(cfg, first):
        await first.deliver(picture_message("evt-p1", "cat-1", len(PNG)))
        await openai_fake.wait_for(lambda calls: calls)
    assert first.fetched == ["cat-1"]  # stopped before the answer came: the message is pending

    second = RecordingConsole(user="alice")
    second.pictures["cat-1"] = PNG
    async with lifetime(cfg, second):
        [answer] = await second.replies(1)
    assert second.fetched == ["cat-1"]  # by its reference: the store never held the bytes
    assert answer == f"echo: what is it? [image image/png, {len(PNG)} bytes]"


async def test_a_picture_that_cannot_be_fetched_gets_a_short_reply(
    openai_fake, console, running, caplog
):
    cfg = make_config(
        {"backends": {"main": {"type": "openai", "base_url": openai_fake.base_url, "vision": True}}}
    )
    caplog.set_level(logging.INFO, logger="bridge.router")  # whatever an earlier test left
    await running(cfg, console)
    await console.deliver(picture_message("evt-p2", "gone"))
    [reply] = await console.replies(1)
    assert reply == "Sorry, I couldn't get that picture. Please try sending it again."
    assert "picture not passed on: no picture gone" in caplog.text
    assert openai_fake.calls == []
