"""The router: the one place that decides what happens to a message.

In order: ignore what is not for the bot, drop a redelivered event, derive the session key, queue
the message in its session's lane, then answer a bridge command or have the routed backend asked
(`bridge.asking`, with a global bound on backend calls), store the formatted reply in the journal
and hand it to delivery. A message recovered after a restart resumes at the stage the journal
recorded (`bridge.journal`): an answered one is delivered, not asked again. A failure anywhere
becomes the user's short apology and one precise log line; nothing here raises into an adapter.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Mapping

from .access import Gate
from .asking import STREAMED, Asker, Outbox, Turn, context, too_long
from .backends import Backend
from .budgets import Budgets
from .commands import Commands
from .config import AccessSettings, BridgeSettings
from .delivery import Deferred, Delivery
from .errors import NotOwner
from .journal import Entry, Outcome, Reply, Stages
from .lanes import Lanes
from .logs import brief
from .metrics import Metrics
from .pending import Pending, holding
from .profiles import Profiles
from .session import key_for
from .store import Store
from .text import cleaned
from .types import Addressed, Inbound, dedup_id

log = logging.getLogger("bridge.router")

__all__ = ["Outbox", "Router"]


def needs_answer(inbound: Inbound) -> bool:
    """Addressed to the bot, and saying something (a photo alone gets its short reply; a bare
    @mention asks what the bot does: it gets the help)."""
    return inbound.addressed is not Addressed.NOT and bool(
        inbound.text.strip() or inbound.unsupported or inbound.addressed is Addressed.MENTION
    )


class Router:
    def __init__(
        self,
        *,
        store: Store,
        backends: Mapping[str, Backend],
        outbox: Outbox,
        settings: BridgeSettings,
        profiles: Profiles,
        metrics: Metrics | None = None,
        gate: Gate | None = None,
        budgets: Budgets | None = None,
        commands: Commands | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._store = store
        self._settings = settings
        self._profiles = profiles
        self._metrics = metrics = metrics or Metrics()
        self._gate = gate or Gate(AccessSettings(), store)  # allows everyone, no limit
        self._budgets = budgets = budgets or Budgets.unlimited(store, metrics)
        self._clock = clock
        # Held until `open()`: recovered messages queue first, and nothing is sent before the
        # adapters are up.
        self._lanes = Lanes(on_change=self._lanes_changed, held=True)
        self._pending = Pending(settings.max_pending)
        self._commands = commands or Commands(
            store=store, backends=backends, settings=settings, profiles=profiles
        )
        self.delivery = Delivery(store.journal, outbox, settings.delivery, metrics)
        self._stages = Stages(store, self.delivery)
        self._asker = Asker(
            backends=backends, outbox=outbox, settings=settings, profiles=profiles,
            stages=self._stages, budgets=budgets, metrics=metrics, clock=clock,
        )  # fmt: skip
        self._closing = False
        self._deferred: set[str] = set()  # sessions whose turn waits for the next start

    # ------------------------------------------------------------------------------- intake

    async def handle(self, inbound: Inbound) -> bool:
        """Take one message from an adapter. Returns once it is durably accepted (True) or
        judged not to need an answer (False: not addressed, empty, or a duplicate)."""
        started = self._clock()
        platform = inbound.platform
        self._metrics.message(platform, "received")
        inbound = await cleaned(inbound)
        if not needs_answer(inbound):
            self._metrics.message(platform, "ignored")
            return False
        key = key_for(inbound, self._settings.session_keys)
        ticket = await self._pending.enter()
        turn = Turn(inbound, key, dedup_id(inbound), started, pending=ticket)
        if not self._closing:
            # Queued before the store is asked, so that arrival order is lane order; the lane
            # waits for the verdict. The intake place is given back once asked, or at the end,
            # or at once behind its own session (else one person's burst would hold them all).
            if self._lanes.submit(turn.key, lambda: holding(ticket, self._run(turn))):
                ticket.release()
        try:
            fresh = await self._store.journal.accept(
                turn.dedup_id, inbound.to_dict(), self._settings.dedup_ttl
            )
        except BaseException as exc:
            turn.accepted.set_exception(exc)
            turn.accepted.exception()  # retrieved here; the lane only needs to know it failed
            log.error("store failed to accept %s: %s", turn.dedup_id, brief(exc))
            raise
        turn.accepted.set_result(fresh)
        if self._settings.log_message_text:
            log.debug("text of %s: %r", turn.dedup_id, inbound.text, extra=context(turn))
        if not fresh:
            self._metrics.message(platform, "duplicate")
            log.info("duplicate event %s dropped", turn.dedup_id, extra=context(turn))
        return fresh

    async def recover(self, platforms: Collection[str] | None = None) -> int:
        """Queue the pending messages of `platforms` that no live process is answering (at
        start: everything accepted before the restart and not completed), each to resume at the
        stage the journal recorded."""
        found = await self._stages.recoverable(platforms)
        for entry, inbound in found:
            self.take(entry, inbound)
            self._metrics.recovered.labels(str(entry.stage)).inc()
        if found:
            log.info("recovering %d pending message(s)", len(found))
        return len(found)

    def open(self) -> None:
        """Let the lanes run (once the adapters are up)."""
        self._lanes.release()

    def take(self, entry: Entry, inbound: Inbound) -> asyncio.Future[None]:
        """Queue a pending message (recovered, or claimed by a worker from the work queue) in
        its session's lane, to resume at the stage its journal entry recorded. The future is
        done once its turn has ended, however it ended."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._closing:
            done.set_result(None)  # left pending: the next start (or holder) answers it
            return done
        key = key_for(inbound, self._settings.session_keys)
        turn = Turn(inbound, key, entry.event_id, self._clock(), entry=entry)
        turn.accepted.set_result(True)

        async def run() -> None:
            try:
                await self._run(turn)
            finally:
                if not done.done():
                    done.set_result(None)

        self._lanes.submit(turn.key, run)
        return done

    async def drain(self, timeout: float) -> bool:
        """Stop taking new work into lanes, finish what is queued within `timeout`, then cancel
        the rest (it stays pending in the store and is answered at the next start)."""
        self._closing = True
        self._pending.close()
        self.delivery.stop()  # a reply waiting to retry stays pending for the next start
        finished = await self._lanes.join(timeout if self._lanes.released else 0)
        if not finished:
            log.warning("drain timeout after %.1fs: unfinished messages stay pending", timeout)
        await self._lanes.close()
        return finished

    async def idle(self, timeout: float | None = None) -> bool:
        return await self._lanes.join(timeout)

    # ------------------------------------------------------------------------------- one turn

    async def _run(self, turn: Turn) -> None:
        try:
            if not await turn.accepted:
                return
        except Exception:
            return  # the store refused it; handle() already logged and told the adapter
        if turn.key in self._deferred:
            return  # an earlier message of this session waits for the restart: so does this one
        try:
            await self._turn(turn)
        except asyncio.CancelledError:
            raise  # shutdown: it stays pending and is answered after the restart
        except Deferred:
            self._deferred.add(turn.key)
        except NotOwner as exc:
            log.warning("session %s: %s; left to its new owner", turn.key, exc, extra=context(turn))
        except Exception:
            # Completed anyway: a message that breaks the bridge must not come back at every start.
            log.exception(
                "session %s: giving up on %s", turn.key, turn.dedup_id, extra=context(turn)
            )
            await self._stages.complete(turn.dedup_id, Outcome.FAILED)

    async def _turn(self, turn: Turn) -> None:
        """Answer (unless the journal has the reply already), store the reply, deliver it."""
        if turn.entry is not None and turn.entry.delivering:
            outcome = await self._stages.resume(turn.entry, turn.inbound)
        else:
            text = turn.inbound.text.strip()
            reply = await self._answer(turn, text)
            if reply is STREAMED:
                await self._stages.complete(turn.dedup_id, Outcome.ANSWERED)
                return
            if reply is None:
                await self._stages.complete(turn.dedup_id, Outcome.SILENT)
                return
            assert isinstance(reply, Reply)
            outcome = await self._stages.answered(turn.dedup_id, turn.inbound, reply, turn.session)
            await self._asker.spend(turn, text, delivered=outcome is Outcome.ANSWERED)
        if outcome is Outcome.ANSWERED:
            platform = turn.inbound.platform
            self._metrics.message(platform, "answered")
            asked, answered = turn.asked, turn.answered
            if asked is not None and answered is not None:
                done = self._clock()
                self._metrics.bridge_added(platform, asked - turn.started, done - answered)
            log.info("answered", extra=context(turn, turn.backend, self._clock() - turn.started))

    async def _answer(self, turn: Turn, text: str) -> Reply | str | None:
        """The reply to post (`STREAMED`: already posted), or None when the message gets none."""
        inbound = turn.inbound
        command = self._commands.parse(inbound, turn.key)
        admission = await self._gate.admit(inbound)
        if not admission.allowed:
            self._metrics.message(inbound.platform, "denied")
            log.info("access denied", extra=context(turn))
            if self._gate.denied_reply:
                return await self._notice(turn, self._gate.denied_reply)
        elif inbound.unsupported and not self._profiles.for_inbound(inbound).sees(inbound):
            self._metrics.message(inbound.platform, "refused")
            return await self._notice(turn, _unsupported(inbound.unsupported))
        elif command is not None:
            return await self._notice(turn, await self._commands.run(command))
        elif len(text) > self._settings.max_input_chars:
            self._metrics.message(inbound.platform, "refused")
            return await self._notice(turn, too_long(len(text), self._settings.max_input_chars))
        elif limited := await self._gate.limit(inbound):
            self._metrics.message(inbound.platform, "rate_limited")
            if limited.first and self._gate.limited_reply:
                wait = f"{max(1, round(limited.wait)):d}"
                return await self._notice(turn, self._gate.limited_reply.format(wait=wait))
        elif over := await self._budgets.check(
            inbound, self._profiles.for_inbound(inbound).backend, admission.control
        ):
            self._metrics.message(inbound.platform, "over_budget")
            return await self._notice(turn, over.reply)
        else:
            return await self._asker.ask(turn, text)
        return None

    async def _notice(self, turn: Turn, text: str) -> Reply:
        return await self._asker.reply(turn, text, kind="notice")

    def _lanes_changed(self, waiting: int, lanes: int) -> None:
        self._metrics.queued.set(waiting)
        self._metrics.sessions.set(lanes)


def _unsupported(what: str) -> str:
    return f"I can only read text, so I can't take {what}. Please ask in words."
