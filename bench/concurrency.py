"""Many slow conversations at once: N people each ask one question at the same moment, through
the Telegram adapter, and the LLM takes `--llm-delay` seconds (2 by default) to answer each.

    python -m bench.concurrency                          # 10,000 in flight, 2 s LLM
    python -m bench.concurrency -n 2000 --max-in-flight 32 --json bench/results/conc.json

Reports whether every question was answered exactly once, the time until the last answer, the
bridge's peak RSS and its growth per waiting conversation, event-loop lag p50/p99/max (a task in
the bridge process ticking every 20 ms) and CPU per answer. With `bridge.max_in_flight` below N
the answers come in waves of max_in_flight every llm-delay seconds: the time until the last
answer shows what that cap costs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

from ._people import Load
from ._stats import machine, write_json
from .e2e import Setup, run_once
from .llm import running_llm


async def run(setup: Setup, people: int, stall: float) -> dict[str, Any]:
    async with running_llm(setup.llm_delay) as llm:
        found = await run_once("bridge", setup, Load(people, people, None, stall), llm)
    idle_rss = found.pop("idle_rss_mb")
    return {
        "benchmark": "concurrency",
        **machine(),
        **found,
        "in_flight": people,
        "time_to_last_answer_s": found["seconds"],
        "idle_rss_mb": idle_rss,
        "kb_per_waiting_conversation": round(
            (found["peak_rss_mb"] - idle_rss) * 1024 / max(people, 1), 2
        ),
        "cpu_ms_per_answer": found["cpu_s_per_1000"],  # s per 1000 = ms per one
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.concurrency", description=__doc__.split("\n")[0]
    )
    p.add_argument("-n", "--conversations", type=int, default=10_000)
    p.add_argument("--llm-delay", type=float, default=2.0)
    p.add_argument("--max-in-flight", type=int, help="bridge.max_in_flight (default: N)")
    p.add_argument("--max-pending", type=int, help="bridge.max_pending (default: its default)")
    p.add_argument("--store", choices=("sqlite", "redis"), default="sqlite")
    p.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
    )
    p.add_argument("--stall", type=float, default=60.0, help="give up after this long idle")
    p.add_argument("--json", help="also write the result as JSON to this path")
    args = p.parse_args(argv)
    setup = Setup(
        "telegram", args.store, args.llm_delay, args.max_in_flight or args.conversations,
        0, args.redis_url, max_pending=args.max_pending,
    )  # fmt: skip
    result = asyncio.run(run(setup, args.conversations, args.stall))
    lag = result["loop_lag_ms"]
    print(
        f"{result['in_flight']} conversations in flight, LLM {args.llm_delay:g} s, "
        f"max_in_flight {setup.max_in_flight}: answered {result['messages']}, "
        f"lost {result['lost']}, duplicates {result['duplicates']}\n"
        f"last answer after {result['time_to_last_answer_s']} s; peak RSS "
        f"{result['peak_rss_mb']} MB (idle {result['idle_rss_mb']} MB, "
        f"{result['kb_per_waiting_conversation']} KB per waiting conversation); loop lag p50 "
        f"{lag['p50']} p99 {lag['p99']} max {lag['max']} ms; CPU "
        f"{result['cpu_ms_per_answer']} ms per answer"
    )
    write_json(args.json, result)
    return 0 if result["lost"] == 0 and result["duplicates"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
