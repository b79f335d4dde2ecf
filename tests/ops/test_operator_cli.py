"""`botbridge forget` and `botbridge sessions` as an operator runs them, beside the store a bridge
filled: the list shows keys and sizes but never what was said; forget empties a person's rows."""

from __future__ import annotations

import sqlite3

import yaml

from bridge.app import Bridge
from tests.conftest import RecordingConsole, make_config
from tests.core.test_cli import botbridge


async def filled_store(tmp_path, openai_fake) -> str:
    raw = {
        "backends": {"main": {"type": "openai", "base_url": openai_fake.base_url}},
        "bridge": {"store": {"path": str(tmp_path / "state.sqlite3")}},
        "access": {"admins": [{"platform": "console", "user": "root"}]},
        "http": {"enabled": False},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    console = RecordingConsole(user="ann")
    bridge = Bridge(make_config(raw), [console])
    await bridge.start()
    try:
        await console.say("a private matter")
        await console.say("in the team", group="team")
        await console.say("bob here", user="bob")
        await console.say("/budget ann 500", user="root")
        await console.replies(4)
        assert await bridge.router.idle(5)
    finally:
        await bridge.stop()
    return str(path)


async def test_sessions_lists_keys_backends_and_sizes_never_the_text(tmp_path, openai_fake):
    config = await filled_store(tmp_path, openai_fake)
    code, out, err = await botbridge("sessions", "-c", config)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["session", "key", "backend", "last", "use", "(UTC)", "bytes"]
    keys = {line.split()[0] for line in lines[1:-1]}
    assert keys == {"wx:dm:cl.ann", "wx:group:cl.team:user:cl.ann", "wx:dm:cl.bob"}
    assert lines[-1] == "3 session row(s)"
    assert "private" not in out and "matter" not in out  # the history is in there, not shown


async def test_forget_deletes_a_persons_rows_and_says_what_went(tmp_path, openai_fake):
    config = await filled_store(tmp_path, openai_fake)
    code, out, err = await botbridge(
        "forget", "-c", config, "--platform", "console", "--user", "ann"
    )
    assert code == 0, err
    assert out.splitlines()[:5] == [
        "forgot cl.ann (console:ann):",
        "  sessions deleted         2",
        "  counters deleted         2",  # her token counts: all backends, and main
        "  pending texts dropped    0",
        "  blocks/budgets deleted   1",
    ]
    db = sqlite3.connect(tmp_path / "state.sqlite3")
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    rows = " ".join(repr(r) for t in tables for r in db.execute(f"SELECT * FROM {t}"))
    assert "cl.ann" not in rows and "private matter" not in rows and "cl.bob" in rows
    db.close()
    code, out, _ = await botbridge("sessions", "-c", config)
    assert "cl.ann" not in out


async def test_an_unreachable_store_is_one_line_and_exit_1(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({
        "backends": {"e": {"type": "echo"}},
        "bridge": {"store": {"type": "redis", "url": "redis://127.0.0.1:1/0"}},
    }))  # fmt: skip
    code, _, err = await botbridge("sessions", "-c", str(path))
    assert code == 1 and err.startswith("botbridge: store failed: ") and "Traceback" not in err


async def test_forget_drops_the_text_of_a_question_left_pending(tmp_path, openai_fake):
    raw = {
        "backends": {"main": {"type": "openai", "base_url": openai_fake.base_url}},
        "bridge": {"store": {"path": str(tmp_path / "state.sqlite3")}, "drain_timeout": 0.1},
        "http": {"enabled": False},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    openai_fake.slow_next(30)  # the first run stops before the answer: the question stays pending
    first = RecordingConsole(user="ann")
    bridge = Bridge(make_config(raw), [first])
    await bridge.start()
    await first.say("a secret still pending")
    await openai_fake.wait_for(lambda calls: calls)
    await bridge.stop()

    code, out, err = await botbridge("forget", "-c", str(path), "--platform", "console", "--user", "ann")
    assert code == 0, err
    assert "  pending texts dropped    1" in out.splitlines()

    again = RecordingConsole(user="ann")
    bridge = Bridge(make_config(raw), [again])
    await bridge.start()
    try:
        assert await bridge.router.recover() == 0  # nothing left to answer after the restart
        await again.say("new question")
        assert await again.replies(1) == ["echo: new question"]
    finally:
        await bridge.stop()
