"""The base class of every error whose message is meant for the user as it stands, and helpers
for such messages: a few items of a long list, a long text cut short, a count with its noun,
what a row's short error means."""

from __future__ import annotations

from collections.abc import Sequence


class UserError(Exception):
    """A problem the user can fix; its message is one clear sentence, shown without traceback."""


def short_list(items: Sequence[str], limit: int = 8) -> str:
    """The first `limit` items joined by commas, with "…" when there are more (for messages)."""
    return ", ".join(items[:limit]) + (", …" if len(items) > limit else "")


def clip_text(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, with "…" when it was longer."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def plural(count: int, noun: str, many: str | None = None) -> str:
    """ "1 row", "2 rows", "1,200 rows": a count with its noun in the right number."""
    word = noun if count == 1 else (many or f"{noun}s")
    return f"{count:,} {word}"


_MEANINGS = (  # (how the error starts, what it means for the person reading the table)
    (
        "refused: private address",
        "the address is inside a private network or this machine; "
        "for safety the app fetches only from the public internet",
    ),
    ("HTTP 404", "the server has no image at this address (moved or deleted)"),
    ("HTTP 401", "the server wants a login before giving the image"),
    ("HTTP 403", "the server refused to give the image (it may block downloads)"),
    ("HTTP 429", "the server asked for fewer requests at once; a retry later usually works"),
    ("HTTP 5", "the server had a problem of its own; a retry later may work"),
    ("timed out", "the server was too slow to send the image"),
    ("could not connect", "the server could not be reached"),
    ("could not resolve host", "no server has this name (a typo in the address?)"),
    ("not an image", "the address gives a web page or another kind of file, not an image"),
    ("larger than", "the file is too large to be a product photo"),
    ("image too large", "the picture has too many pixels to decode safely"),
    ("only http and https", "the cell does not hold a web address (http:// or https://)"),
    ("not a valid URL", "the cell does not hold a well-formed web address"),
    ("no image URL", "the cell is empty"),
    ("no such file", "there is no file at this path"),
    (
        "internal error",
        "something unexpected went wrong with this row; the job's log has the details",
    ),
)


def explain_error(error: str) -> str:
    """What a row's short error means, in plain words ("" for one not known here)."""
    return next((meaning for start, meaning in _MEANINGS if error.startswith(start)), "")
