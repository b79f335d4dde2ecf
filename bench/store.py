"""What the store costs: operations per second for the per-message sequence, and bytes per idle
session, on SQLite (a file, WAL) and on Redis.

    python -m bench.store                       # both stores, default sizes
    python -m bench.store --stores sqlite -n 5000 --json bench/results/store.json
    python -m bench.store --stores redis cluster --cluster-url redis://10.0.0.5:7000/0

The per-message sequence is `SEQUENCE` below, the store calls the router makes for one answered
question, in order; when the journal gains stages, add them there. It is run one message at a
time (each call waits for the last: latency-bound, like a single conversation) and with
`--concurrency` messages at once (throughput). An idle session is one that asked once and was
answered: its state (a thread id; or, with history kept by the bridge, 20 messages), and the
event id remembered for `dedup_ttl`. SQLite's figure is the file's growth after a checkpoint;
Redis's the sum of `MEMORY USAGE` over the benchmark's own keys (its own prefix, deleted after).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge.journal import Outcome, Reply, SessionWrite
from bridge.store import Store
from bridge.store.redis import RedisStore
from bridge.store.sqlite import SqliteStore
from bridge.types import ChatKind, Inbound

from ._stats import machine, summary, write_json

TTL = 172800.0  # bridge.dedup_ttl's default
BACKEND = "main"


@dataclass(frozen=True, slots=True)
class Message:
    event_id: str
    key: str
    payload: dict[str, Any]
    state: dict[str, Any]


Step = Callable[[Store, Message], Awaitable[object]]

# The store calls for one question answered in one part, in order (bridge/router.py and
# bridge/journal.py): accepted, asked (with the session's state read in the same round trip),
# answered (the reply and the new state stored before the send), the state written, completed.
SEQUENCE: list[tuple[str, Step]] = [
    ("journal.accept", lambda s, m: s.journal.accept(m.event_id, m.payload, TTL)),
    ("journal.asked", lambda s, m: s.journal.asked(m.event_id, m.key, BACKEND)),
    ("journal.answered", lambda s, m: s.journal.answered(
        m.event_id, REPLY, SessionWrite(m.key, BACKEND, m.state))),
    ("sessions.put", lambda s, m: s.sessions.put(m.key, BACKEND, m.state)),
    ("journal.complete", lambda s, m: s.journal.complete(m.event_id, Outcome.ANSWERED)),
]  # fmt: skip
REPLY = Reply(("An answer of a typical length, posted in one part. " * 6,))


def history(turns: int = 20) -> list[dict[str, str]]:
    """A bridge-kept history: `turns` messages (the default history.max_messages is 20)."""
    question = "How do I rotate the logs of a service that writes to stderr? " * 2
    answer = ("Let journald or the container runtime collect stderr, then rotate there. " * 6)
    return [
        {"role": "user" if i % 2 == 0 else "assistant",
         "content": question if i % 2 == 0 else answer}
        for i in range(turns)
    ]  # fmt: skip


def message(n: int, session: int, state: dict[str, Any]) -> Message:
    person = str(10_000_000 + session)
    inbound = Inbound(
        platform="telegram", chat_id=person, sender_id=person, sender_name=f"Person {session}",
        text=f"q{n} what is the answer?", kind=ChatKind.DM, event_id=f"7000001.{n}",
        message_id=str(n), received_at=time.time(),
    )  # fmt: skip
    return Message(
        f"telegram::{inbound.event_id}", f"wx:dm:tg.{person}", inbound.to_dict(), state
    )


def open_store(kind: str, tmp: str, redis_url: str) -> Store:
    if kind in ("redis", "cluster"):
        return RedisStore(redis_url, prefix=f"bench-{uuid.uuid4().hex}", cluster=kind == "cluster")
    return SqliteStore(str(Path(tmp) / f"{uuid.uuid4().hex}.sqlite3"))


async def cleanup(store: Store) -> None:
    if isinstance(store, RedisStore):
        keys = [k async for k in store.redis.scan_iter(match=f"{store.prefix}:*", count=1000)]
        for start in range(0, len(keys), 1000):
            await store.redis.delete(*keys[start : start + 1000])
    await store.close()


async def throughput(store: Store, messages: int, sessions: int, concurrency: int) -> dict:
    state = {"conv_thread_id": uuid.uuid4().hex}
    times: dict[str, list[float]] = {name: [] for name, _ in SEQUENCE}
    queue = [message(n, n % sessions, state) for n in range(messages)]

    async def one(m: Message) -> None:
        for name, step in SEQUENCE:
            started = time.perf_counter()
            await step(store, m)
            times[name].append((time.perf_counter() - started) * 1000)

    async def worker(items: list[Message]) -> None:
        for m in items:
            await one(m)

    started = time.perf_counter()
    await asyncio.gather(*(worker(queue[i::concurrency]) for i in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {
        "concurrency": concurrency,
        "messages_per_s": round(messages / elapsed, 1),
        "operations_per_s": round(messages * len(SEQUENCE) / elapsed, 1),
        "operation_ms": {name: summary(found) for name, found in times.items()},
    }


async def bytes_per_idle_session(store: Store, sessions: int, kept: list | None) -> dict:
    before = await size(store)
    for n in range(sessions):
        state: dict[str, Any] = {"conv_thread_id": uuid.uuid4().hex}
        if kept is not None:
            state = {"history": kept}
        m = message(n, n, state)
        for _, step in SEQUENCE:
            await step(store, m)
    grown = await size(store) - before
    return {"sessions": sessions, "bytes_per_session": round(grown / sessions, 1)}


async def size(store: Store) -> int:
    if isinstance(store, SqliteStore):
        await store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        rows = await store.db.execute_fetchall(
            "SELECT page_count * page_size - freelist_count * page_size"
            " FROM pragma_page_count(), pragma_page_size(), pragma_freelist_count()"
        )
        return int(rows[0][0])
    assert isinstance(store, RedisStore)
    total = 0
    async for key in store.redis.scan_iter(match=f"{store.prefix}:*", count=1000):
        total += int(await store.redis.memory_usage(key, samples=0) or 0)
    return total


async def measure(kind: str, args: argparse.Namespace, tmp: str) -> dict[str, Any]:
    found: dict[str, Any] = {"store": kind, "sequence": [name for name, _ in SEQUENCE]}
    runs = []
    for concurrency in (1, args.concurrency):
        store = open_store(kind, tmp, url_for(kind, args))
        await store.open()
        try:
            runs.append(await throughput(store, args.messages, args.sessions, concurrency))
        finally:
            await cleanup(store)
    found["sequential"], found["concurrent"] = runs
    for label, kept in (("idle_session", None), ("idle_session_with_history", history())):
        store = open_store(kind, tmp, url_for(kind, args))
        await store.open()
        try:
            found[label] = await bytes_per_idle_session(store, args.idle_sessions, kept)
        finally:
            await cleanup(store)
    return found


def url_for(kind: str, args: argparse.Namespace) -> str:
    return args.cluster_url if kind == "cluster" else args.redis_url


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        stores = [await measure(kind, args, tmp) for kind in args.stores]
    return {
        "benchmark": "store",
        **machine(),
        "messages": args.messages,
        "sessions": args.sessions,
        "history_messages": len(history()),
        "history_json_bytes": len(json.dumps({"history": history()})),
        "stores": stores,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.store", description=__doc__.split("\n")[0])
    p.add_argument(
        "--stores", nargs="+", choices=("sqlite", "redis", "cluster"), default=["sqlite", "redis"]
    )
    p.add_argument("-n", "--messages", type=int, default=5000)
    p.add_argument("-s", "--sessions", type=int, default=500)
    p.add_argument("--concurrency", type=int, default=64, help="messages at once")
    p.add_argument("--idle-sessions", type=int, default=5000)
    p.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
    )
    p.add_argument(
        "--cluster-url",
        default=os.environ.get("REDIS_CLUSTER_URL"),
        help="any node of a Redis Cluster, for --stores cluster (its prefix is deleted after)",
    )
    p.add_argument("--json", help="also write the result as JSON to this path")
    args = p.parse_args(argv)
    if "cluster" in args.stores and not args.cluster_url:
        p.error("--stores cluster needs --cluster-url (or REDIS_CLUSTER_URL)")
    result = asyncio.run(run(args))
    for found in result["stores"]:
        seq, conc = found["sequential"], found["concurrent"]
        print(
            f"{found['store']:6}: {seq['messages_per_s']} messages/s one at a time "
            f"({seq['operations_per_s']} ops/s), {conc['messages_per_s']} messages/s with "
            f"{conc['concurrency']} at once ({conc['operations_per_s']} ops/s); idle session "
            f"{found['idle_session']['bytes_per_session']} bytes, with "
            f"{result['history_messages']} messages of history "
            f"{found['idle_session_with_history']['bytes_per_session']} bytes"
        )
        for name, ms in seq["operation_ms"].items():
            print(f"        {name:18} p50 {ms['p50']} ms  p99 {ms['p99']} ms (one at a time)")
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
