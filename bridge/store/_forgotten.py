"""What survives a /forget of a session: a marker that carries no personal data.

The marker is keyed by an HMAC of the session key under a random secret kept in the store (so the
key itself, which holds a user id, is not kept), and holds a random salt: the session's next
server-side id becomes `{key}#{salt}`, never one used before the forget.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets


def new_secret() -> str:
    return secrets.token_hex(32)


def new_salt() -> str:
    return "f-" + secrets.token_hex(6)


def tag(secret: str, session_key: str) -> str:
    return hmac.new(secret.encode(), session_key.encode(), hashlib.sha256).hexdigest()
