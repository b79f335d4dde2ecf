"""A picture sent to the bot, downloaded through the Bot API by python-telegram-bot: getFile, then
the file URL (`api_file_url`). Telegram states a file's size on the message and again in getFile,
so a picture over the limit is refused before its bytes are fetched; should neither state it, the
Bot API's own cap on downloads (20 MB) bounds what is read before the size is checked.
"""

from __future__ import annotations

from collections.abc import Callable

from telegram import Bot
from telegram.error import TelegramError

from bridge.errors import PictureTooLarge, PictureUnavailable
from bridge.types import Picture


async def download(
    bot: Bot, picture: Picture, max_bytes: int, scrub: Callable[[BaseException], str]
) -> bytes:
    """The picture's bytes; `scrub` removes the token from an error's text."""
    try:
        file = await bot.get_file(picture.ref)
    except TelegramError as exc:
        raise PictureUnavailable(f"telegram getFile failed: {scrub(exc)}") from None
    if file.file_size is not None and file.file_size > max_bytes:
        raise PictureTooLarge(file.file_size, max_bytes)
    try:
        data = await file.download_as_bytearray()
    except (TelegramError, RuntimeError) as exc:  # RuntimeError: getFile gave no file_path
        raise PictureUnavailable(f"telegram file download failed: {scrub(exc)}") from None
    return bytes(data)
