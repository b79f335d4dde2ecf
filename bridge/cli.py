"""`botbridge run | check | console | forget | sessions`. Exit status 2 on a config error, 1 on a
failed probe."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

from . import __version__, heap
from .adapter import Adapter
from .app import Bridge
from .backends import build_backend
from .config import Config, embedded_default, load_config, secret_values
from .errors import ConfigError, StoreLocked, StoreUnavailable
from .leases import Election
from .logs import Redactor, brief, setup_logging
from .roles import RoleName, build_role, check_role, poller_election, process_id
from .store import open_store

log = logging.getLogger("bridge")

PROBE_TIMEOUT = 20.0
CONSOLE_STOP = 1.5  # seconds: Ctrl-C must end the console promptly, whatever hangs


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        config = load_config(args.config) if args.config else None
    except ConfigError as exc:
        print(f"botbridge: config error: {exc}", file=sys.stderr)
        return 2
    try:
        if args.command == "run":
            return asyncio.run(_run(config, RoleName(args.role)))
        if args.command == "check":
            return asyncio.run(_check(config, offline=args.offline))
        if args.command in ("forget", "sessions"):
            return asyncio.run(_operator(args, config))
        code = asyncio.run(_console(config, user=args.user, group=args.group))
        if code == 130:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # see _console
        return code
    except ConfigError as exc:
        print(f"botbridge: config error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # leaving: another Ctrl-C changes nothing
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="botbridge", description="Chat platforms to LLM APIs.")
    parser.add_argument("--version", action="version", version=f"botbridge {__version__}")
    commands = parser.add_subparsers(dest="command")
    run = commands.add_parser("run", help="run the daemon")
    run.add_argument("-c", "--config", required=True, help="YAML config file")
    run.add_argument(
        "--role",
        choices=[role.value for role in RoleName],
        default=RoleName.ALL.value,
        help="all: receive and answer (default); ingress: receive and queue; worker: answer "
        "from the queue (the split roles need bridge.store.type: redis)",
    )
    check = commands.add_parser("check", help="validate the config and probe tokens and backends")
    check.add_argument("-c", "--config", required=True)
    check.add_argument("--offline", action="store_true", help="validate only; no network")
    console = commands.add_parser("console", help="talk to the bridge from the terminal")
    console.add_argument("-c", "--config", help="YAML config (default: echo backend)")
    console.add_argument("--user", default="local", help="your user id (default: local)")
    console.add_argument("--group", help="be a user in this group instead of a DM")
    forget = commands.add_parser("forget", help="delete what the bridge holds about a person")
    forget.add_argument("-c", "--config", required=True)
    forget.add_argument("--platform", required=True, help="telegram, discord, slack, console")
    forget.add_argument("--user", required=True, help="their user id on that platform")
    forget.add_argument("--workspace", help="Slack: the team id (T…)")
    sessions = commands.add_parser("sessions", help="list stored sessions (never their content)")
    sessions.add_argument("-c", "--config", required=True)
    sessions.add_argument("--limit", type=int, help="the most recently used N only")
    return parser


def _logging(config: Config, level: str | None = None) -> None:
    b = config.bridge
    setup_logging(level or b.log_level, b.log_format, b.log_levels, secret_values(config))


def _adapters(config: Config, bridge_metrics, election: Election | None = None) -> list[Adapter]:
    from adapters import build_adapter

    return [
        build_adapter(
            name, section, bridge_metrics, **({"election": election} if name == "telegram" else {})
        )
        for name, section in config.adapters.enabled().items()
    ]


def _require_backend(config: Config) -> None:
    if not config.backends:
        raise ConfigError("backends", "at least one backend is required")


# --------------------------------------------------------------------------------------- run


async def _run(config: Config | None, role_name: RoleName = RoleName.ALL) -> int:
    assert config is not None
    _require_backend(config)
    check_role(config, role_name)
    _logging(config)
    from .metrics import Metrics

    metrics = Metrics()
    store = open_store(config.bridge, owner=True)
    holder = process_id()
    role = build_role(role_name, config, store, metrics, holder)
    election = poller_election(config, store, holder) if role_name is not RoleName.WORKER else None
    adapters = _adapters(config, metrics, election)
    bridge = Bridge(config, adapters, metrics=metrics, store=store, role=role)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if not await _start(bridge):
        return 1
    heap.settle()
    _summary(config, bridge)
    await stop.wait()
    log.info("stopping: finishing in-flight answers (up to %.0fs)", config.bridge.drain_timeout)
    await bridge.stop()
    log.info("stopped")
    return 0


async def _start(bridge: Bridge) -> bool:
    """Start, or say in one line why not (a port in use, an unwritable state directory, an
    unreachable store) and release what did start."""
    try:
        await bridge.start()  # undoes what it started when a part fails
    except ConfigError:  # found once the store answered (a partition count that differs)
        raise
    except StoreLocked as exc:  # another daemon (or console) owns this state file
        log.error("botbridge could not start: %s", exc)
    except StoreUnavailable as exc:
        log.error("botbridge could not start: %s (bridge.state_dir, bridge.store)", exc)
    except Exception as exc:
        log.error("botbridge could not start: %s", brief(exc))
    else:
        return True
    return False


def _summary(config: Config, bridge: Bridge) -> None:
    adapters = ", ".join(a.platform for a in bridge.adapters) or "none"
    backends = ", ".join(f"{n} ({c.type})" for n, c in config.backends.items())
    routes = f"{len(config.routes)} rule(s), default {config.default_backend()}"
    store = config.bridge.store
    where = config.bridge.store_path() if store.type == "sqlite" else "redis"
    http = (
        f"http://{config.http.host}:{bridge.http.port} ({' '.join(bridge.http.paths)})"
        if bridge.http
        else "off"
    )
    log.info(
        "botbridge %s running as %s: adapters=%s backends=%s routes=%s state=%s http=%s",
        __version__,
        bridge.role.name,
        adapters,
        backends,
        routes,
        where,
        http,
    )
    if not bridge.adapters:
        log.warning("no adapter is enabled: serving HTTP only (a config check)")


# ------------------------------------------------------------------------------------- check


async def _check(config: Config | None, *, offline: bool) -> int:
    assert config is not None
    _require_backend(config)
    _logging(config, level="error")
    rows: list[tuple[str, str, str]] = [("config", "ok", f"{len(config.backends)} backend(s)")]
    if not offline:
        from .metrics import Metrics

        for name, section in config.backends.items():
            backend = build_backend(name, section)
            rows.append((f"backend {name}", *await _probe(backend.probe())))
            await backend.aclose()
        for adapter in _adapters(config, Metrics()):
            rows.append((f"adapter {adapter.platform}", *await _probe(adapter.probe())))
    width = max(len(row[0]) for row in rows)
    redact = Redactor(secret_values(config))  # an API may echo a key back in its error text
    for component, status, detail in rows:
        print(f"{component:<{width}}  {status:<6}  {redact(detail)}")
    return 0 if all(row[1] == "ok" for row in rows) else 1


async def _probe(call) -> tuple[str, str]:
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            return "ok", await call
    except TimeoutError:
        return "FAILED", f"no answer in {PROBE_TIMEOUT:.0f}s"
    except Exception as exc:
        cause = getattr(exc, "cause", type(exc).__name__)
        return "FAILED", f"{cause}: {exc}"


# ------------------------------------------------------------------------- forget, sessions


async def _operator(args: argparse.Namespace, config: Config | None) -> int:
    from . import ops

    assert config is not None
    _logging(config, level="warning")
    try:
        if args.command == "forget":
            return await ops.forget(
                config, platform=args.platform, user=args.user, workspace=args.workspace
            )
        return await ops.sessions(config, limit=args.limit)
    except Exception as exc:  # the store is unreachable or unreadable: one line, not a trace
        print(f"botbridge: store failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


# ----------------------------------------------------------------------------------- console


async def _console(config: Config | None, *, user: str, group: str | None) -> int:
    """Until stdin ends (then every answer is printed: exit 0), stdout is closed by its reader
    (`| head -1`: stop quietly, exit 0) or Ctrl-C (stop at once, keep what is pending: 130)."""
    from adapters.console import ConsoleAdapter

    config = config or embedded_default()
    _require_backend(config)
    _logging(config, level="warning")
    console = ConsoleAdapter(user=user, group=group)
    bridge = Bridge(config, [console], serve_http=False)
    console.pace = bridge.router.idle  # one line at a time: nothing piles up unanswered
    interrupted = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, interrupted.set)  # a second Ctrl-C: the same
    try:
        if not await _start(bridge):
            return 1
        await _first(interrupted.wait(), _answered(console, bridge))
        if interrupted.is_set():  # cut the answer under way: it stays pending
            await _stop_within(bridge, CONSOLE_STOP, drain=0)
        elif console.output_closed:  # let the answer that found no reader complete
            await _stop_within(bridge, CONSOLE_STOP, drain=CONSOLE_STOP / 2)
        else:
            await bridge.stop()
    finally:
        if interrupted.is_set():
            # Leaving already, within a bound: one more Ctrl-C must not turn the exit into a
            # KeyboardInterrupt in some teardown step. (The loop's handler stays until the loop
            # closes; `main` ignores SIGINT from there on.)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        else:
            loop.remove_signal_handler(signal.SIGINT)
    return 130 if interrupted.is_set() else 0


async def _answered(console, bridge: Bridge) -> None:
    await console.finished.wait()
    if not console.output_closed:
        await bridge.router.idle()


async def _first(*waits: Coroutine[Any, Any, Any]) -> None:
    tasks = [asyncio.ensure_future(wait) for wait in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _stop_within(bridge: Bridge, seconds: float, *, drain: float) -> None:
    """Stop within `seconds`, draining for `drain` (what is cut stays pending). The store is
    closed whatever happens: its thread would keep the process alive."""
    try:
        async with asyncio.timeout(seconds):
            await bridge.stop(drain=drain)
    except TimeoutError:
        log.warning("did not stop cleanly within %gs; leaving now", seconds)
        try:
            async with asyncio.timeout(0.5):
                await bridge.store.close()
        except TimeoutError:
            sys.stderr.flush()
            os._exit(130)  # the store's thread is stuck: nothing else can end the process
