"""The base class of every error whose message is meant for the user as it stands, and helpers
for such messages: a few items of a long list, a count with its noun."""

from __future__ import annotations

from collections.abc import Sequence


class UserError(Exception):
    """A problem the user can fix; its message is one clear sentence, shown without traceback."""


def short_list(items: Sequence[str], limit: int = 8) -> str:
    """The first `limit` items joined by commas, with "…" when there are more (for messages)."""
    return ", ".join(items[:limit]) + (", …" if len(items) > limit else "")


def plural(count: int, noun: str, many: str | None = None) -> str:
    """ "1 row", "2 rows", "1,200 rows": a count with its noun in the right number."""
    word = noun if count == 1 else (many or f"{noun}s")
    return f"{count:,} {word}"
