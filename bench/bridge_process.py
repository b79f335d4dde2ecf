"""The bridge under test, alone in its process: `python -m bench.bridge_process CONFIG.json`.

The whole daemon as `botbridge run` builds it (config → store, backends, router, adapters), but
driven by `bench._child` (ready / mark / stop on stdin and stdout) so the benchmark can read its
CPU time, peak RSS and event-loop lag apart from the fakes'. Logs go to stderr at the config's
level; `--profile PATH` writes cProfile stats of the measured part.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

from adapters import build_adapter
from bridge import heap
from bridge.app import Bridge
from bridge.config import parse_config, secret_values
from bridge.logs import setup_logging
from bridge.metrics import Metrics

from ._child import serve


async def _main(raw: dict, profile: str | None) -> None:
    config = parse_config(raw, {})
    setup_logging(config.bridge.log_level, "text", config.bridge.log_levels, secret_values(config))
    metrics = Metrics()
    adapters = [
        build_adapter(name, section, metrics)
        for name, section in config.adapters.enabled().items()
    ]
    bridge = Bridge(config, adapters, metrics=metrics)

    async def start() -> None:
        await bridge.start()
        heap.settle()  # as `botbridge run` does once up

    await serve(start, bridge.stop, profile)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config", help="the bridge config as a JSON file")
    parser.add_argument("--profile", help="write cProfile stats of the measured part here")
    args = parser.parse_args()
    asyncio.run(_main(json.loads(Path(args.config).read_text()), args.profile))


if __name__ == "__main__":
    main()
