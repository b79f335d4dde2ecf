"""Every error the bridge raises on purpose, in one small hierarchy.

Backends raise a `BackendError` subclass that says why the call failed; the router is the one place
that turns it into the user's apology. Texts never carry secrets: they hold what an operator needs
(status, the API's own message), nothing from the request headers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class BridgeError(Exception):
    """Base of every error the bridge raises deliberately."""


class ConfigError(BridgeError):
    """A config mistake, named by its path in the file (`backends.main.base_url`)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


class BackendError(BridgeError):
    """A backend could not produce an answer. `cause` is a short label for logs and metrics."""

    cause = "error"
    retryable = False

    def __init__(self, detail: str, *, status: int | None = None, sent: bool = True) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
        # False only when the request provably never reached the server (connect failed): the
        # one case where a non-idempotent call may be retried.
        self.sent = sent
        # Session state the failed turn still created (a new thread id): saved by the router so
        # the next turn continues that conversation instead of losing it.
        self.state: Mapping[str, Any] | None = None


class Timeout(BackendError):
    cause = "timeout"
    retryable = True


class RateLimited(BackendError):
    cause = "rate_limited"
    retryable = True

    def __init__(self, detail: str, *, status: int | None = 429, retry_after: float | None = None):
        super().__init__(detail, status=status)
        self.retry_after = retry_after


class Unavailable(BackendError):
    """The server is down, overloaded, or the connection failed."""

    cause = "unavailable"
    retryable = True


class BadResponse(BackendError):
    """The server answered something we cannot read as an answer."""

    cause = "bad_response"


class Rejected(BackendError):
    """The server refused the request itself (a 4xx other than 401/403/429)."""

    cause = "rejected"


class AuthFailed(BackendError):
    """The credentials were refused (401/403)."""

    cause = "auth"


class InputTooLong(BackendError):
    """The API cannot take a message this long; the user is told the limit."""

    cause = "input_too_long"

    def __init__(self, limit: int, length: int) -> None:
        super().__init__(f"message is {length} characters; this assistant takes at most {limit}")
        self.limit = limit
        self.length = length


class CircuitOpen(BackendError):
    """The backend is short-circuited: it failed repeatedly and its cool-down is not over."""

    cause = "circuit_open"

    def __init__(self, backend: str, retry_in: float) -> None:
        super().__init__(f"backend {backend} is short-circuited for another {retry_in:.1f}s")
        self.retry_in = retry_in


class StoreUnavailable(BridgeError):
    """The store cannot be reached just now (Redis down or restarting): the caller pauses and
    tries again; nothing it had accepted is lost."""


class NotOwner(BridgeError):
    """This process no longer owns the message: its lease lapsed or another process took the
    work over (fenced off). It must neither post nor record anything more for it."""
