"""Showing probabilities so that people can tell them apart.

With hundreds of labels every top score can be below 1 %: "0.7 %" five times says nothing. The
number of decimals grows until the scores shown differ (as far as they really do), and long
label names are wrapped for charts instead of being cut off.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

MAX_DECIMALS = 4


def percent_decimals(scores: Sequence[float], least: int = 1) -> int:
    """Decimals for showing `scores` (0..1) as percentages: the fewest, from `least`, at which
    scores that differ also look different (at most MAX_DECIMALS)."""
    distinct = len(set(scores))
    for decimals in range(least, MAX_DECIMALS + 1):
        if len({f"{score:.{decimals}%}" for score in scores}) == distinct:
            return decimals
    return MAX_DECIMALS


def format_percent(score: float, decimals: int) -> str:
    """A probability as a percentage with this many decimals, e.g. 0.0071 -> "0.71%"."""
    return f"{score:.{decimals}%}"


def wrap_label(label: str, width: int = 28) -> str:
    """A long label broken into lines (plotly's <br>) of at most about `width` characters."""
    return "<br>".join(textwrap.wrap(label, width, break_long_words=True)) or label
