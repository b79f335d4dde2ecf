"""Telegram long polling, owned by the adapter: getUpdates in a loop whose offset moves only past
updates the bridge accepted, a watchdog that restarts a poller with no completed round trip for
`stall_timeout` on a fresh connection, and — with several processes on one bot — an `Election`
that lets one of them poll at a time (the others stand by and take over when it dies or stalls).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from telegram import Bot, Update
from telegram.error import Conflict, InvalidToken, RetryAfter, TelegramError
from telegram.request import BaseRequest

from bridge.adapter import Health
from bridge.config import TelegramAdapter as TelegramConfig
from bridge.leases import Election
from bridge.logs import brief
from bridge.metrics import Metrics

from ._telegram_send import _seconds

log = logging.getLogger("adapters.telegram")


class Poller:
    def __init__(
        self,
        bot: Bot,
        request: BaseRequest,
        config: TelegramConfig,
        metrics: Metrics,
        *,
        dispatch: Callable[[Update], Awaitable[None]],
        scrub: Callable[[object], str],
        election: Election | None = None,
    ) -> None:
        self._bot = bot
        self._request = request  # getUpdates' own connection: a stalled poll is cut alone
        self._config = config
        self._metrics = metrics
        self._dispatch = dispatch
        self._scrub = scrub
        self._election = election
        self._task: asyncio.Task[None] | None = None
        self._offset = 0  # the first update id not yet accepted by the router
        self._last_ok: float | None = None  # monotonic time of the last good getUpdates
        self._poll_started = 0.0
        self._elected_at = 0.0
        self.problem = "waiting for the first getUpdates"
        self._conflict = False
        self.restarts = 0  # poller restarts after a stall (tests and logs read it)

    def start(self) -> None:
        if self._election is None:
            self._task = asyncio.create_task(self._supervise(), name="telegram-poller")
        else:
            elected = self._election.run(self._lead, self._healthy)
            self._task = asyncio.create_task(elected, name="telegram-election")

    async def stop(self) -> None:
        if self._task is None:
            return
        # Confirming offsets while another process polls would cut its long poll (409).
        polling = self._election is None or self._election.leading
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None
        if polling:
            await self._confirm_offset()

    def health(self) -> Health:
        if self._election is not None and not self._election.leading:
            return Health(True, "standing by: another process polls")
        if self._last_ok is None or self._conflict:
            return Health(False, self.problem)
        age = time.monotonic() - self._last_ok
        if age > self._config.stall_timeout:
            return Health(False, f"no getUpdates round trip for {age:.0f}s")
        return Health(True, "polling")

    # ------------------------------------------------------------------------------ election

    async def _lead(self) -> None:
        """Poll while elected: from Telegram's own unconfirmed updates (the previous poller's
        offset may be stale; what it accepted and Telegram still holds is dropped as a
        duplicate)."""
        self._elected_at = time.monotonic()
        self._offset = 0
        self._metrics.elected.labels("telegram_poller").set(1)
        try:
            await self._supervise()
        finally:
            self._metrics.elected.labels("telegram_poller").set(0)

    def _healthy(self) -> bool:
        """While elected: a getUpdates round trip within `stall_timeout` (else step down)."""
        quiet = time.monotonic() - max(self._last_ok or 0.0, self._elected_at)
        return quiet < self._config.stall_timeout

    async def _confirm_offset(self) -> None:
        """Tell Telegram which updates were accepted, so a restart does not fetch them again
        (the router would drop them as duplicates anyway; this saves the work)."""
        if not self._offset:
            return
        try:
            async with asyncio.timeout(2):
                await self._bot.get_updates(offset=self._offset, timeout=0, limit=1)
        except (TimeoutError, TelegramError) as exc:
            log.debug("telegram: could not confirm offset at stop: %s", self._scrub(exc))

    # ------------------------------------------------------------------------------ polling

    async def _supervise(self) -> None:
        """Run the poller; restart it, with backoff, when no getUpdates completes in time."""
        while True:
            self._poll_started = time.monotonic()
            poller = asyncio.create_task(self._poll(), name="telegram-getUpdates")
            try:
                await self._until_stalled(poller)
            finally:
                poller.cancel()
                await asyncio.gather(poller, return_exceptions=True)
            self.restarts += 1
            quiet = time.monotonic() - max(self._last_ok or 0.0, self._poll_started)
            self.problem = f"no getUpdates round trip for {quiet:.0f}s; poller restarted"
            wait = self._backoff(self.restarts)
            log.warning(
                "telegram: no getUpdates round trip for %.1fs: restarting the poller in %gs "
                "(restart %d)",
                quiet,
                wait,
                self.restarts,
            )
            await self._reconnect()
            await asyncio.sleep(wait)

    async def _until_stalled(self, poller: asyncio.Task[None]) -> None:
        stall = self._config.stall_timeout
        while True:
            since = max(self._last_ok or 0.0, self._poll_started)
            left = since + stall - time.monotonic()
            if left <= 0:
                return
            done, _ = await asyncio.wait({poller}, timeout=left)
            if done:  # _poll only ends by a bug: log it and restart like a stall
                log.error("telegram poller ended unexpectedly", exc_info=poller.exception())
                return

    async def _reconnect(self) -> None:
        """Drop the getUpdates connection (it may be half-open) so the next poll dials anew."""
        try:
            await self._request.shutdown()
            await self._request.initialize()
        except Exception as exc:
            log.warning("telegram: resetting the polling connection failed: %s", brief(exc))

    async def _poll(self) -> None:
        failures = 0
        while True:
            if self._election is not None and not self._election.leading:
                # The lease ran out (this process was paused, or Redis is away): ask nothing more
                # of Telegram; the election cancels this task.
                await asyncio.Future()
            try:
                updates = await self._bot.get_updates(
                    offset=self._offset or None,
                    timeout=self._config.poll_timeout,
                    allowed_updates=self._config.allowed_updates,
                )
                self._polled_ok(failures)
                failures = 0
                await self._dispatch_batch(updates)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # nothing may end the poller; each cause is named
                failures += 1
                await asyncio.sleep(self._poll_failed(exc, failures))

    async def _dispatch_batch(self, updates: Sequence[Update]) -> None:
        """Hand a batch to the router, each chat's updates in order, the chats side by side.

        One at a time, each update waited for the store's round trip before the next was even
        looked at (a burst of 2,000 took seconds to take in). A session lives in one chat, so
        keeping each chat's updates in series keeps every session's arrival order, even when the
        store fails mid-batch: a chat's updates after a failed one are left for the next
        getUpdates. The offset moves past the longest accepted prefix of the batch; an update
        after it that was accepted anyway comes back and the router drops it as a duplicate."""
        chats: dict[int | None, list[Update]] = {}
        for update in updates:
            chat = update.effective_chat
            chats.setdefault(chat.id if chat is not None else None, []).append(update)
        accepted: set[int] = set()
        failures: list[BaseException] = []

        async def in_series(chat_updates: list[Update]) -> None:
            for update in chat_updates:
                try:
                    await self._dispatch(update)
                except Exception as exc:
                    failures.append(exc)
                    return
                accepted.add(update.update_id)

        await asyncio.gather(*(in_series(found) for found in chats.values()))
        for update in updates:
            if update.update_id not in accepted:
                raise failures[0]
            self._offset = update.update_id + 1  # accepted: safe to confirm

    def _polled_ok(self, failures: int) -> None:
        if failures or self.problem:
            log.info(
                "telegram: getUpdates works%s",
                f" again after {failures} failure(s)" if failures else "",
            )
        self._last_ok = time.monotonic()
        self._conflict = False
        self.problem = ""

    def _poll_failed(self, exc: Exception, failures: int) -> float:
        """Log (once per streak at warning level) and return how long to wait."""
        wait = self._backoff(failures)
        if isinstance(exc, Conflict):
            self._conflict = True
            detail = (
                f"409 Conflict from getUpdates ({self._scrub(exc)}): only one process may poll "
                "a bot token; stop the other poller or use webhook mode"
            )
        elif isinstance(exc, RetryAfter):
            wait = _seconds(exc.retry_after)
            detail = f"getUpdates rate limited: waiting {wait:g}s"
        elif isinstance(exc, InvalidToken):
            detail = "getUpdates: the Bot API rejected the token"
        elif isinstance(exc, TelegramError):
            detail = f"getUpdates failed: {self._scrub(exc)}"
        else:  # the router could not accept an update: fetch it again later, lose nothing
            detail = f"update not accepted, will be fetched again: {self._scrub(brief(exc))}"
        self.problem = detail
        level = logging.WARNING if failures == 1 else logging.DEBUG
        if isinstance(exc, Conflict | InvalidToken) or not isinstance(exc, TelegramError):
            level = logging.ERROR if failures == 1 else logging.DEBUG
        log.log(level, "telegram: %s (failure %d, retry in %gs)", detail, failures, wait)
        return wait

    def _backoff(self, failures: int) -> float:
        config = self._config
        return min(config.retry_backoff * 2 ** (failures - 1), config.max_backoff)
