"""The benchmarks' LLM: the fake OpenAI server in a process of its own (its CPU is not the
bridge's), answering at once or after `--delay` seconds, and timestamping each question.

Each question's text starts with its benchmark id (`q123 …`); the server notes when the request
arrived and when its answer left (time.monotonic(), which every process on the machine shares),
and `GET /_bench/stamps` hands the notes over (and forgets them), so the benchmark can join them
with the platform's own timestamps.

    python -m bench.llm --port 0 --delay 2.0      # prints the port, serves until killed
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import sys
import time
from collections.abc import AsyncIterator

from aiohttp import web

from tests.fakes.openai_api import FakeOpenAI

_ID = re.compile(r"q(\d+)\b")


class StampingLLM(FakeOpenAI):
    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.stamps: dict[str, list[float]] = {}  # id -> [received, answered]
        super().__init__(record=False)

    def setup(self, app: web.Application) -> None:
        super().setup(app)
        app.router.add_get("/_bench/stamps", self._hand_over)

    async def _complete(self, request: web.Request) -> web.Response:
        received = time.monotonic()
        body = await request.json()
        found = _ID.search(body["messages"][-1]["content"])
        if self.delay:
            await asyncio.sleep(self.delay)  # the LLM's own latency, which the bench simulates
        content = f"echo: {body['messages'][-1]['content']}"
        response = web.json_response(self._completion(content))
        if found:
            self.stamps[found.group(1)] = [received, time.monotonic()]
        return response

    async def _hand_over(self, request: web.Request) -> web.Response:
        stamps, self.stamps = self.stamps, {}
        return web.json_response(stamps)


@contextlib.asynccontextmanager
async def running_llm(delay: float = 0.0) -> AsyncIterator[str]:
    """Start `python -m bench.llm` as a child process; yields its base URL (…/v1)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.llm", "--port", "0", "--delay", str(delay),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        port = int(await asyncio.wait_for(proc.stdout.readline(), 30))
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        await proc.wait()


async def _serve(port: int, delay: float) -> None:
    server = StampingLLM(delay)
    await server.start_on(port)
    print(server.port, flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the benchmarks' fake LLM until killed.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.port, args.delay))


if __name__ == "__main__":
    main()
