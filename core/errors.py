"""The base class of every error whose message is meant for the user as it stands, and a helper
for naming a few items of a long list in such a message."""

from __future__ import annotations

from collections.abc import Sequence


class UserError(Exception):
    """A problem the user can fix; its message is one clear sentence, shown without traceback."""


def short_list(items: Sequence[str], limit: int = 8) -> str:
    """The first `limit` items joined by commas, with "…" when there are more (for messages)."""
    return ", ".join(items[:limit]) + (", …" if len(items) > limit else "")
