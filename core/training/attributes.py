"""Several attributes (label columns) trained at once over the same embeddings, and product text
beside the image: the settings' defaults, and classes too rare to learn folded into OTHER.

Folding follows the catalogue projects this product learns from (a fashion tagger folded every
class under 500 examples into one "None" class): a class seen a handful of times can be neither
learnt nor judged, while "something else" is a useful answer to predict.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

DEFAULT_MIN_CLASS_COUNT = 10  # rarer classes are folded into OTHER for their attribute
DEFAULT_TEXT_DROPOUT = 0.3  # share of training examples also seen with their text hidden
OTHER = "other"


def rare_classes(labels: Sequence[str], min_count: int) -> tuple[str, ...]:
    """The classes with fewer than `min_count` examples, most frequent first (then by name);
    OTHER itself is never listed: it is where they go."""
    counts = Counter(labels)
    rare = [c for c in counts if counts[c] < min_count and c != OTHER]
    return tuple(sorted(rare, key=lambda c: (-counts[c], c)))


def fold_labels(labels: Sequence[str], folded: Sequence[str]) -> list[str]:
    """`labels` with every class in `folded` replaced by OTHER."""
    gone = set(folded)
    return [OTHER if label in gone else label for label in labels]


def single_class_problem(column: str, classes: Sequence[str], folded: Sequence[str]) -> str | None:
    """One sentence when the attribute of label column `column` has fewer than two classes
    (left after folding `folded` into OTHER); None when it can be trained."""
    if len(classes) >= 2:
        return None
    only = f"a single class ('{classes[0]}')" if classes else "no class"
    if folded:
        return (
            f"Label column '{column}' has {only} once the classes with too few examples "
            f"({len(folded)} of them) are folded into '{OTHER}'; lower the minimum class count "
            "or add examples."
        )
    return f"Label column '{column}' has {only}; training needs at least two classes."
