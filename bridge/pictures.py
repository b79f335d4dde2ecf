"""Pictures for backends that can see: checked before, during and after the adapter downloads them.

Before: what the platform states (a type that is not an accepted image, a size over
`bridge.max_image_bytes`) refuses the picture without a download. During: `Capped` collects a
streamed download and stops it at the first bytes that are no picture or at the size limit. After:
the type is judged by the bytes themselves (magic numbers), never by a name or a claim.
"""

from __future__ import annotations

from typing import Protocol

from .errors import PictureNotSupported, PictureTooLarge
from .types import Image, Picture

# What the OpenAI-compatible vision APIs take.
ACCEPTED = ("image/jpeg", "image/png", "image/webp", "image/gif")
ACCEPTED_NAMES = "JPEG, PNG, WebP, GIF"  # as people know them
_SNIFF_BYTES = 12  # enough for every signature below


def sniff(head: bytes) -> str | None:
    """The image type the first bytes announce; None when they announce none we accept."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def precheck(picture: Picture, max_bytes: int) -> None:
    """Refuse before any download what the platform already says is too large or no picture."""
    if picture.size is not None and picture.size > max_bytes:
        raise PictureTooLarge(picture.size, max_bytes)
    if picture.mime is not None and picture.mime.split(";")[0].strip().lower() not in ACCEPTED:
        raise PictureNotSupported(f"the platform says it is {picture.mime}")


def checked(data: bytes, max_bytes: int) -> Image:
    """The downloaded bytes as an `Image`, once their size and type are right."""
    if len(data) > max_bytes:
        raise PictureTooLarge(len(data), max_bytes)
    mime = sniff(data[:_SNIFF_BYTES])
    if mime is None:
        raise PictureNotSupported(f"its first bytes are no accepted image ({data[:8]!r})")
    return Image(mime, data)


class Capped:
    """Collects a streamed download; raises as soon as it is too large or plainly no picture, so
    the caller can drop the connection instead of reading the rest."""

    def __init__(self, max_bytes: int) -> None:
        self._max = max_bytes
        self._chunks: list[bytes] = []
        self._size = 0
        self._head = b""

    def add(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size > self._max:
            raise PictureTooLarge(None, self._max)
        if len(self._head) < _SNIFF_BYTES:
            self._head += chunk[: _SNIFF_BYTES - len(self._head)]
            if len(self._head) >= _SNIFF_BYTES and sniff(self._head) is None:
                raise PictureNotSupported(f"its first bytes are no accepted image ({self._head!r})")
        self._chunks.append(chunk)

    def data(self) -> bytes:
        return b"".join(self._chunks)


class PictureSource(Protocol):
    """Where the bytes come from: the adapter of the platform the picture was sent on."""

    async def fetch_picture(self, platform: str, picture: Picture, max_bytes: int) -> bytes:
        """The picture's bytes; `PictureTooLarge` as soon as it is known to exceed `max_bytes`,
        `PictureUnavailable` when it cannot be had."""


async def load(source: PictureSource, platform: str, picture: Picture, max_bytes: int) -> Image:
    """Check, download and check again: the picture as a backend may be sent it."""
    precheck(picture, max_bytes)
    return checked(await source.fetch_picture(platform, picture, max_bytes), max_bytes)
