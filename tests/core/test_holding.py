"""Messages a platform cannot deliver again (Discord) are held while the store is away and
handed on in arrival order once it is back; a bounded number, the rest dropped and counted."""

from __future__ import annotations

import pytest

from bridge.errors import StoreUnavailable
from bridge.holding import Holding
from bridge.types import ChatKind, Inbound
from tests.fakes.base import eventually


def message(n: int) -> Inbound:
    return Inbound(
        platform="discord", chat_id="c", sender_id="u", text=f"m{n}", kind=ChatKind.DM,
        event_id=str(n),
    )  # fmt: skip


class Store:
    def __init__(self) -> None:
        self.away = False
        self.accepted: list[str] = []

    async def deliver(self, inbound: Inbound) -> bool:
        if self.away:
            raise StoreUnavailable("redis unreachable")
        self.accepted.append(inbound.text)
        return True


async def test_messages_arriving_while_the_store_is_away_are_accepted_in_order_once_it_is_back():
    store = Store()
    holding = Holding(store.deliver, platform="discord")
    await holding.deliver(message(0))
    store.away = True
    for n in (1, 2, 3):
        await holding.deliver(message(n))
    assert holding.held == 3 and store.accepted == ["m0"]
    store.away = False
    await holding.deliver(message(4))  # arrives while the held ones are handed on: after them
    await eventually(lambda: holding.held == 0, 10)
    assert store.accepted == ["m0", "m1", "m2", "m3", "m4"]
    await holding.close()


async def test_beyond_its_limit_a_message_is_dropped_and_counted():
    store = Store()
    store.away = True
    holding = Holding(store.deliver, platform="discord", limit=2)
    for n in range(3):
        await holding.deliver(message(n))
    assert holding.held == 2 and holding.dropped == 1
    await holding.close()
    assert holding.held == 0


async def test_a_failure_that_is_not_an_outage_is_not_held():
    async def broken(inbound: Inbound) -> bool:
        raise ValueError("a bug")

    holding = Holding(broken, platform="discord")
    with pytest.raises(ValueError):
        await holding.deliver(message(0))
    assert holding.held == 0
