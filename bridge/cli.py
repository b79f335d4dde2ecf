"""`botbridge run | check | console`. Exit status 2 on a config error, 1 on a failed probe."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from . import __version__
from .adapter import Adapter
from .app import Bridge
from .backends import build_backend
from .config import Config, embedded_default, load_config, secret_values
from .errors import ConfigError
from .leases import Election
from .logs import Redactor, setup_logging
from .roles import RoleName, build_role, check_role, poller_election, process_id
from .store import open_store

log = logging.getLogger("bridge")

PROBE_TIMEOUT = 20.0


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
        return asyncio.run(_console(config, user=args.user, group=args.group))
    except ConfigError as exc:
        print(f"botbridge: config error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
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
    store = open_store(config.bridge)
    holder = process_id()
    role = build_role(role_name, config, store, metrics, holder)
    election = poller_election(config, store, holder) if role_name is not RoleName.WORKER else None
    adapters = _adapters(config, metrics, election)
    bridge = Bridge(config, adapters, metrics=metrics, store=store, role=role)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await bridge.start()
    except ConfigError:  # found once the store answered (a partition count that differs)
        await bridge.stop()
        raise
    except Exception as exc:  # a port in use, an unreachable store: say it in one line
        log.error("botbridge could not start: %s: %s", type(exc).__name__, exc)
        await bridge.stop()
        return 1
    _summary(config, bridge)
    await stop.wait()
    log.info("stopping: finishing in-flight answers (up to %.0fs)", config.bridge.drain_timeout)
    await bridge.stop()
    log.info("stopped")
    return 0


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


# ----------------------------------------------------------------------------------- console


async def _console(config: Config | None, *, user: str, group: str | None) -> int:
    from adapters.console import ConsoleAdapter

    config = config or embedded_default()
    _require_backend(config)
    _logging(config, level="warning")
    console = ConsoleAdapter(user=user, group=group)
    bridge = Bridge(config, [console], serve_http=False)
    await bridge.start()
    try:
        await console.finished.wait()
        await bridge.router.idle()
    finally:
        await bridge.stop()
    return 0
