"""Labelled images for fine-tuning: read the labelled CSV, count classes, split for validation.

A labelled CSV has an image column (http(s) URLs; on the command line local paths too), a label
column and optionally a caption/title column. The corrected output of a bulk job qualifies: its
image URL column and `predicted_category` (or a set's `<set>_category`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from sklearn.model_selection import train_test_split

from core.bulk.csv_input import CsvInputError, inspect_csv, iter_rows, looks_like_url, preview

MIN_IMAGES_PER_CLASS = 5  # below this a class is warned about: too few to learn or to judge
LABEL_COLUMN_NAMES = ("label", "category", "class", "predicted_category")


def guess_label_column(path: str | Path, image_column: str | None) -> str | None:
    """The labelled CSV's likely label column, never the image column: a well-known name
    first, else the text column (not URLs, not numbers) with the fewest distinct values among
    its first rows (at least 2 of them); None when no column qualifies."""
    frame = preview(path, rows=500)
    candidates = [str(c) for c in frame.columns if str(c) != image_column]
    folded = {c.strip().casefold(): c for c in candidates}
    for wanted in LABEL_COLUMN_NAMES:
        if wanted in folded:
            return folded[wanted]
    best, fewest = None, None
    for column in candidates:
        values = [v.strip() for v in frame[column].astype(str) if v.strip()]
        if not values or any(looks_like_url(v) for v in values) or all(_number(v) for v in values):
            continue
        distinct = len(set(values))
        if distinct >= 2 and (fewest is None or distinct < fewest):
            best, fewest = column, distinct
    return best


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class LabelledImage:
    image: str  # URL or local path
    label: str
    caption: str = ""


@dataclass(frozen=True)
class LabelledData:
    items: tuple[LabelledImage, ...]
    skipped: int  # rows without an image or a label

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names in order of first appearance."""
        return tuple(dict.fromkeys(item.label for item in self.items))

    def class_counts(self) -> Counter[str]:
        return Counter(item.label for item in self.items)

    def small_classes(self, minimum: int = MIN_IMAGES_PER_CLASS) -> list[str]:
        return [label for label, n in self.class_counts().items() if n < minimum]


def read_labelled_csv(
    path: str | Path, image_column: str, label_column: str, caption_column: str | None = None
) -> LabelledData:
    """The usable rows of a labelled CSV; CsvInputError with one sentence when it is unusable."""
    info = inspect_csv(path)
    wanted = [image_column, label_column] + ([caption_column] if caption_column else [])
    missing = [c for c in wanted if c not in info.columns]
    if missing:
        raise CsvInputError(
            f"Column '{missing[0]}' is not in the labelled CSV; its columns are: "
            f"{', '.join(info.columns)}."
        )
    items, skipped = [], 0
    for row in iter_rows(path):
        image, label = row.get(image_column, "").strip(), row.get(label_column, "").strip()
        if not image or not label:
            skipped += 1
            continue
        caption = row.get(caption_column, "").strip() if caption_column else ""
        items.append(LabelledImage(image, label, caption))
    data = LabelledData(tuple(items), skipped)
    if len(data.classes) < 2:
        raise CsvInputError(
            f"The labelled CSV has {len(data.classes)} class(es) in '{label_column}'; training "
            "needs at least two."
        )
    return data


def stratified_split(
    labels: list[str], validation_fraction: float, seed: int = 0
) -> tuple[list[int], list[int]]:
    """Indices (train, validation), each class split in the same proportion with a fixed seed.

    A class with a single image cannot be in both parts: it goes to training (and the
    validation metrics then cannot judge it, which the page says).
    """
    if not 0 < validation_fraction < 1:
        raise ValueError("the validation fraction must be between 0 and 1")
    counts = Counter(labels)
    splittable = [i for i, label in enumerate(labels) if counts[label] >= 2]
    singles = [i for i, label in enumerate(labels) if counts[label] < 2]
    n_classes = len({labels[i] for i in splittable})
    n_val = max(round(len(splittable) * validation_fraction), n_classes)
    if not splittable or n_val >= len(splittable):
        raise ValueError("too few labelled images for a validation split")
    train, val = train_test_split(
        splittable,
        test_size=n_val,
        random_state=seed,
        stratify=[labels[i] for i in splittable],
    )
    return sorted([*train, *singles]), sorted(val)


@dataclass(frozen=True)
class TrainingExamples:
    """The labelled images that loaded, their classes and their train/validation split (indices
    into `items`)."""

    items: list[LabelledImage]
    labels: list[str]
    classes: list[str]
    train_idx: list[int]
    val_idx: list[int]

    @classmethod
    def split(
        cls, items: list[LabelledImage], validation_fraction: float, seed: int
    ) -> TrainingExamples:
        labels = [item.label for item in items]
        classes = sorted(set(labels))
        train_idx, val_idx = stratified_split(labels, validation_fraction, seed)
        return cls(items, labels, classes, train_idx, val_idx)

    @property
    def val_truth(self) -> list[str]:
        """The labels of the validation images, in validation order."""
        return [self.labels[i] for i in self.val_idx]
