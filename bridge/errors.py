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


class StoreUnavailable(BridgeError):
    """The store cannot be opened or reached (an unwritable state directory, an unreachable or
    restarting Redis): the text names the path or address and why, never a password. A running
    process that meets it pauses and tries again; nothing it had accepted is lost."""


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


class Unsendable(BackendError):
    """The bridge could not build or send the request (a body that does not encode, a URL the
    client refuses): our fault, never a sign of the backend's health."""

    cause = "unsendable"


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


class PictureError(BridgeError):
    """A picture the bridge will not pass to a backend; `reply` is what the user is told, the
    message (`detail`) what the operator's log says."""

    reply = "Sorry, I couldn't get that picture. Please try sending it again."


class PictureTooLarge(PictureError):
    def __init__(self, size: int | None, limit: int) -> None:
        known = f"{size:,} bytes" if size is not None else f"over {limit:,} bytes"
        super().__init__(f"picture is {known}; the limit is {limit:,}")
        self.size = size
        self.limit = limit

    @property
    def reply(self) -> str:  # type: ignore[override]
        size = f" is {megabytes(self.size)}" if self.size is not None else " is too large"
        return (
            f"That picture{size}; I can take pictures up to {megabytes(self.limit)}. "
            "Please send a smaller one."
        )


class PictureNotSupported(PictureError):
    """Not a JPEG, PNG, WebP or GIF picture (by what the platform claims, or by its bytes)."""

    reply = "I can look at JPEG, PNG, WebP and GIF pictures; that file is none of them."


class PictureUnavailable(PictureError):
    """The download failed (the platform refused it, the file is gone, the network failed)."""


def megabytes(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB".replace(".0 MB", " MB")


class DeliveryFailed(BridgeError):
    """A reply part could not be posted this time (network, timeout, 5xx, a rate limit beyond the
    wait budget, a full connection pool): the message stays pending and delivery tries again.

    `maybe_sent` is True when the platform may have posted it all the same (a timed-out request
    that reached it): the next attempt must not blindly post it again. `retry_after` is the wait
    the platform asked for, if it named one."""

    def __init__(
        self, detail: str, *, maybe_sent: bool = False, retry_after: float | None = None
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.maybe_sent = maybe_sent
        self.retry_after = retry_after


class Undeliverable(BridgeError):
    """The platform refused the reply for good (the bot was blocked or removed, the chat does not
    exist, the message can never be accepted): the message ends as `undeliverable`."""


class NotOwner(BridgeError):
    """This process no longer owns the message: another took it over (its owner's lease had
    expired), or this worker's lease on the message's partition lapsed or moved on (fenced off).
    It must neither post nor record anything more for it."""


class StoreLocked(BridgeError):
    """Another process holds the state file: one daemon per SQLite file."""

    def __init__(self, path: str, pid: str) -> None:
        who = f"process {pid}" if pid else "another process"
        super().__init__(f"{path} is in use by {who}; one botbridge per state file")
        self.path = path
        self.pid = pid
