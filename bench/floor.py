"""The floor: the barest python-telegram-bot pipe, alone in its process, for comparison.

getUpdates (long polling, offset after each batch) → for each update a task that asks the same
fake LLM over httpx and posts the answer with sendMessage. No store, no router, no limiter, no
typing indicator, no formatting: what any bot through PTB costs at the least. Driven like the
bridge by `bench._child`: `python -m bench.floor CONFIG.json`, where the JSON holds `token`,
`api_base_url`, `llm_url`, `poll_timeout` and `transport`: "httpx" (PTB's own HTTPXRequest and
an httpx client for the LLM, as issue 13 describes the floor) or "aiohttp" (the bridge's
`AiohttpRequest` under PTB and an aiohttp session for the LLM: the same transport as the bridge,
so the fraction measures the bridge's own work).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from telegram import Bot, Update
from telegram.request import BaseRequest, HTTPXRequest

from adapters._telegram_request import AiohttpRequest

from ._child import serve


class Floor:
    def __init__(self, settings: dict[str, Any]) -> None:
        self._settings = settings
        self._aiohttp = settings.get("transport") == "aiohttp"
        kind = AiohttpRequest if self._aiohttp else HTTPXRequest
        request: BaseRequest = kind(connection_pool_size=256)
        self._bot = Bot(
            settings["token"],
            base_url=settings["api_base_url"],
            request=request,
            get_updates_request=kind(connection_pool_size=1),
        )
        self._llm_url = settings["llm_url"].rstrip("/") + "/chat/completions"
        self._llm = httpx.AsyncClient(timeout=60)
        self._session: aiohttp.ClientSession | None = None
        self._poller: asyncio.Task[None] | None = None
        self._answering: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        if self._aiohttp:
            self._session = aiohttp.ClientSession()
        await self._bot.initialize()
        self._poller = asyncio.create_task(self._poll(), name="floor-poller")

    async def _poll(self) -> None:
        offset = None
        while True:
            updates = await self._bot.get_updates(
                offset=offset, timeout=self._settings["poll_timeout"], allowed_updates=["message"]
            )
            for update in updates:
                task = asyncio.create_task(self._answer(update))
                self._answering.add(task)
                task.add_done_callback(self._answering.discard)
            if updates:
                offset = updates[-1].update_id + 1

    async def _answer(self, update: Update) -> None:
        message = update.message
        if message is None or not message.text:
            return
        body = {"messages": [{"role": "user", "content": message.text}]}
        if self._session is not None:
            async with self._session.post(self._llm_url, json=body) as response:
                answer = await response.json()
        else:
            answer = (await self._llm.post(self._llm_url, json=body)).json()
        await self._bot.send_message(message.chat_id, answer["choices"][0]["message"]["content"])

    async def stop(self) -> None:
        tasks = [t for t in (self._poller, *self._answering) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._llm.aclose()
        if self._session is not None:
            await self._session.close()
        await self._bot.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config", help="the floor's settings as a JSON file")
    parser.add_argument("--profile", help="write cProfile stats of the measured part here")
    args = parser.parse_args()
    floor = Floor(json.loads(Path(args.config).read_text()))
    asyncio.run(serve(floor.start, floor.stop, args.profile))


if __name__ == "__main__":
    main()
