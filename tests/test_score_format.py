"""Probabilities shown so that they can be told apart; long labels wrapped for charts."""

from core.engine.score_format import format_percent, percent_decimals, wrap_label


def test_decimals_grow_until_different_scores_look_different():
    assert percent_decimals([0.62, 0.2, 0.1]) == 1
    assert percent_decimals([0.0071, 0.0069, 0.0068]) == 2
    assert percent_decimals([0.00712, 0.00714]) == 3
    assert percent_decimals([0.5, 0.5]) == 1  # equal scores need no more digits
    assert percent_decimals([0.123456781, 0.123456782]) == 4  # at most 4
    assert format_percent(0.0071, 2) == "0.71%"


def test_long_labels_are_wrapped_not_cut():
    label = "Audi R8 Coupe 2012, a mid-engine sports car in red"
    wrapped = wrap_label(label, 20)
    assert wrapped.replace("<br>", " ") == label
    assert all(len(line) <= 20 for line in wrapped.split("<br>"))
    assert wrap_label("short") == "short"
