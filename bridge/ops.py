"""The operator's commands on the store, from the terminal: `botbridge forget` (what /forget does,
for any person, also dropping an admin's block and personal budget) and `botbridge sessions` (the
stored sessions: key, backend, last use, size; never their content). Both open the store the
config names, so they work beside a running daemon (SQLite in WAL mode, or Redis)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import TextIO

from .config import Config
from .forget import Forgetter
from .people import Account, People
from .store import Store, open_store


async def forget(
    config: Config,
    *,
    platform: str,
    user: str,
    workspace: str | None = None,
    store: Store | None = None,
    out: TextIO = sys.stdout,
) -> int:
    store = store or open_store(config.bridge)
    people = People(config.access)
    account = Account(platform, workspace, user)
    await store.open()
    try:
        done = await Forgetter(store, people, config.bridge.session_keys).forget(
            account, controls=True
        )
    finally:
        await store.close()
    linked = people.accounts(account)
    print(f"forgot {people.subject(account)} ({', '.join(str(a) for a in linked)}):", file=out)
    print(f"  sessions deleted         {done.sessions}", file=out)
    print(f"  counters deleted         {done.counters}", file=out)
    print(f"  pending texts dropped    {done.pending}", file=out)
    print(f"  blocks/budgets deleted   {done.controls}", file=out)
    if done.sessions:
        print("  servers that keep history get a new session id for these sessions", file=out)
    return 0


async def sessions(
    config: Config,
    *,
    limit: int | None = None,
    store: Store | None = None,
    out: TextIO = sys.stdout,
) -> int:
    store = store or open_store(config.bridge)
    await store.open()
    try:
        rows = await store.sessions.list(limit)
    finally:
        await store.close()
    table = [("session key", "backend", "last use (UTC)", "bytes")]
    for row in rows:
        used = datetime.fromtimestamp(row.updated, UTC).strftime("%Y-%m-%d %H:%M:%S")
        table.append((row.key, row.backend, used, str(row.size)))
    widths = [max(len(cells[i]) for cells in table) for i in range(3)]
    for key, backend, used, size in table:
        print(
            f"{key:<{widths[0]}}  {backend:<{widths[1]}}  {used:<{widths[2]}}  {size:>5}", file=out
        )
    print(f"{len(rows)} session row(s)", file=out)
    return 0
