"""The journal's side of a streamed answer: what the user sees is recorded as it grows, and a
message a crash left mid-stream is finished in the message(s) already shown, never posted twice.

`Recorder` writes a stream's `Shown` (stage asked): at once when a message starts showing the
answer or a part is finished, the growing text at most every `streaming.record_interval`.
After a restart `resumed` turns that record into the reply to deliver: the parts already
finished stay as they are (recorded as sent), and the next part replaces the message that was
growing. Asked again only where that is harmless and nothing was final yet: a backend that keeps
no conversation (the bridge keeps its history) and no finished part; otherwise the answer ends
as what was recorded plus the apology, never with a second copy beside the first.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable, Sequence

from .errors import NotOwner
from .journal import Reply, Shown
from .metrics import Metrics

log = logging.getLogger("bridge.streaming")


class Recorder:
    """Records what one streamed answer shows, as it grows (its journal entry's `Shown`)."""

    def __init__(
        self,
        write: Callable[[Shown], Awaitable[None]],
        *,
        interval: float,
        clock: Callable[[], float],
    ) -> None:
        self._write = write
        self._interval = interval
        self._clock = clock
        self._shown = Shown()
        self._at: float | None = None  # when the last record was written

    async def showing(self, live: str | None, text: str) -> None:
        """An update went through: `live` (None: a fading draft) shows `text`. A new message is
        recorded at once, new text once `interval` has passed since the last record."""
        shown = self._shown
        if self._at is not None and live == shown.live:
            if text == shown.text or self._clock() - self._at < self._interval:
                return
        await self._record(dataclasses.replace(shown, live=live, text=text))

    async def posting(self, part: str) -> None:
        """`part` is about to be posted as a new message: a crash from now on may leave it on
        the platform without its record."""
        await self._record(dataclasses.replace(self._shown, text=part, posting=True))

    async def sealed(self, part: str, ids: Sequence[str], *, last: bool) -> None:
        """`part` is finished, in the messages `ids`; `last`: the answer is complete."""
        shown = self._shown
        await self._record(Shown((*shown.parts, part), (*shown.sent, ",".join(ids)), done=last))

    async def finished(self) -> None:
        """Every part was finished while the answer grew: nothing is left to post."""
        await self._record(dataclasses.replace(self._shown, done=True))

    async def _record(self, shown: Shown) -> None:
        self._shown, self._at = shown, self._clock()
        try:
            await self._write(shown)
        except NotOwner:
            raise  # the message is another process's now: this stream must stop
        except Exception as exc:  # only an aid to recovery: never worth the answer itself
            log.warning("recording a streamed answer failed: %r", exc)


async def finish(
    shown: Shown,
    *,
    stateless: bool,
    ask_again: Callable[[], Awaitable[Reply]],
    apologise: Callable[[str], Awaitable[Reply]],
) -> tuple[str, Reply]:
    """How a stream a crash cut short ends (`asked_again`, `delivered` or `apology`), and the
    reply that finishes it in the messages already shown. `apologise(text)`: `text` and the
    apology, as a reply."""
    if shown.done:
        return "delivered", after_shown(shown, None)
    if asks_again(stateless, shown):
        reply = await ask_again()
        if reply.kind != "apology":  # a failed second call keeps what was shown, and apologises
            return "asked_again", into_shown(reply, shown)
    return "apology", after_shown(shown, await apologise(shown.text))


def asks_again(stateless: bool, shown: Shown) -> bool:
    """Whether a stream a crash cut short is asked for again: only where a second call adds no
    second turn to a conversation a server keeps, and before any part was final (a new answer
    could not continue parts the user already has)."""
    return stateless and not shown.parts and not shown.done


def into_shown(reply: Reply, shown: Shown) -> Reply:
    """The reply of the question asked again, put into the message the stream was growing in."""
    return dataclasses.replace(reply, edit=shown.live)


def after_shown(shown: Shown, rest: Reply | None) -> Reply:
    """The reply that finishes what was shown: its finished parts (already posted), then `rest`
    (what the growing message held, and the apology) in place of the growing message."""
    if rest is None:  # every part was delivered before the crash
        return Reply(shown.parts, "answer", posted=shown.sent)
    return Reply(shown.parts + rest.parts, rest.kind, posted=shown.sent, edit=shown.live)


def count_resumed(metrics: Metrics, platform: str, shown: Shown, how: str, event_id: str) -> None:
    metrics.streams_resumed.labels(platform, how).inc()
    if shown.posting:  # like any part caught between its post and its record
        metrics.possibly_repeated.labels(platform).inc()
        log.warning(
            "%s: a finished part of streamed answer %s may have been posted already and is "
            "posted again (the platform cannot deduplicate it)",
            platform,
            event_id,
            extra={"platform": platform, "event_id": event_id},
        )
    log.info(
        "%s: streamed answer %s cut short by a restart, finished in its messages (%s)",
        platform,
        event_id,
        how,
        extra={"platform": platform, "event_id": event_id},
    )
