"""Who a message is from, as one person: the operator may link one person's accounts on several
platforms (`access.people`), so that budgets, rate limits, blocks and /forget follow the person.

An account is (platform, workspace, user id). A linked person's subject is `person:{name}`; anyone
else's is their qualified id (`tg.42`, `sl.T024.U012`), which no other account can produce.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import AccessSettings, PlatformUser
from .session import qualify
from .types import Inbound

PERSON = "person:"
PLATFORMS = ("telegram", "discord", "slack", "console")


@dataclass(frozen=True, slots=True)
class Account:
    platform: str
    workspace: str | None
    user: str

    @classmethod
    def of(cls, inbound: Inbound) -> Account:
        return cls(inbound.platform, inbound.workspace, inbound.sender_id)

    @property
    def qualified(self) -> str:
        return qualify(self.platform, self.workspace, self.user)

    def __str__(self) -> str:
        where = f"{self.workspace}:" if self.workspace else ""
        return f"{self.platform}:{where}{self.user}"


class BadTarget(ValueError):
    """A USER argument that names no account; the text says what to write instead."""


class People:
    def __init__(self, access: AccessSettings) -> None:
        self._names: dict[tuple[str, str | None, str], str] = {}
        self._accounts: dict[str, list[Account]] = {}
        for name, accounts in access.people.items():
            self._accounts[name] = [_account(a) for a in accounts]
            for account in accounts:
                self._names[(account.platform, account.workspace, account.user)] = name
        self._admins = {(a.platform, a.workspace, a.user) for a in access.admins}

    def name_of(self, account: Account) -> str | None:
        """The linked person's name (an entry without a workspace matches any workspace)."""
        return self._names.get(
            (account.platform, account.workspace, account.user)
        ) or self._names.get((account.platform, None, account.user))

    def subject(self, account: Account) -> str:
        """The key budgets, rate limits and blocks are kept under for this account's person."""
        name = self.name_of(account)
        return PERSON + name if name is not None else account.qualified

    def accounts(self, account: Account) -> list[Account]:
        """Every account of this account's person: itself, and the ones linked to it."""
        name = self.name_of(account)
        linked = self._accounts.get(name, []) if name is not None else []
        return [account, *(a for a in linked if a != account)]

    @property
    def has_admins(self) -> bool:
        """Admins are configured: only then can anyone be blocked or get a personal budget."""
        return bool(self._admins)

    def is_admin(self, account: Account) -> bool:
        return (account.platform, account.workspace, account.user) in self._admins or (
            account.platform,
            None,
            account.user,
        ) in self._admins

    def target(self, text: str, asker: Account) -> Account:
        """An admin's USER argument: `42` (an id on the admin's own platform and workspace),
        `telegram:42`, `slack:T024:U012`, a mention (`<@U012>`), or a linked person's name."""
        word = text.strip()
        if word.startswith("<@") and word.endswith(">"):
            word = word[2:-1].lstrip("!&").split("|", 1)[0]
        if not word:
            raise BadTarget("name a user: their numeric id, or platform:id")
        if word in self._accounts:
            return self._accounts[word][0]
        if word.startswith("@"):
            raise BadTarget(f"{word}: use the user's id, not their @name")
        parts = word.split(":")
        if len(parts) == 1:
            return Account(asker.platform, asker.workspace, word)
        if parts[0] not in PLATFORMS or len(parts) > 3 or not all(parts):
            raise BadTarget(f"{word}: write an id, platform:id or platform:workspace:id")
        if len(parts) == 3:
            return Account(parts[0], parts[1], parts[2])
        workspace = asker.workspace if parts[0] == asker.platform else None
        return Account(parts[0], workspace, parts[1])


def _account(user: PlatformUser) -> Account:
    return Account(user.platform, user.workspace, user.user)
