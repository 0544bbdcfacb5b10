"""Labelled images for fine-tuning: read the labelled CSV, count classes, split for validation.

A labelled CSV has an image column (http(s) URLs; on the command line local paths too), one or
more label columns (one trained attribute each), optionally a caption column (contrastive) and
product-text columns (the probe reads their text beside the image). The corrected output of a
bulk job qualifies: its image URL column and `predicted_category` (or a set's `<set>_category`).

A row lacking any of its labels is skipped whole: every attribute then trains and is judged on
the same images with the same split, so "every attribute right" means something per product.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from sklearn.model_selection import train_test_split

from core.bulk.csv_input import (
    CsvInputError,
    check_text_columns,
    inspect_csv,
    iter_rows,
    looks_like_url,
    preview,
)
from core.engine.product_text import join_product_text
from core.training.attributes import fold_labels, rare_classes, single_class_problem

if TYPE_CHECKING:
    from core.training.job import FinetuneSpec

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
    labels: tuple[str, ...]  # one per attribute (label column), in the spec's order
    caption: str = ""
    text: str = ""  # product text: the row's text columns joined ("" when it has none)

    @property
    def label(self) -> str:
        """The main (first) attribute's label."""
        return self.labels[0]


@dataclass(frozen=True)
class LabelledData:
    items: tuple[LabelledImage, ...]
    skipped: int  # rows without an image or without one of the labels
    attributes: tuple[str, ...] = ("label",)  # the label columns, the main one first
    folded: tuple[tuple[str, ...], ...] = ()  # per attribute: the classes folded into OTHER

    @property
    def classes(self) -> tuple[str, ...]:
        """The main attribute's class names in order of first appearance."""
        return self.attribute_classes(0)

    def attribute_classes(self, attribute: int) -> tuple[str, ...]:
        """Class names of attribute number `attribute`, in order of first appearance."""
        return tuple(dict.fromkeys(item.labels[attribute] for item in self.items))

    def class_counts(self, attribute: int = 0) -> Counter[str]:
        return Counter(item.labels[attribute] for item in self.items)

    def small_classes(self, minimum: int = MIN_IMAGES_PER_CLASS, attribute: int = 0) -> list[str]:
        return [label for label, n in self.class_counts(attribute).items() if n < minimum]

    def folded_classes(self, attribute: int) -> tuple[str, ...]:
        """The classes of `attribute` folded into OTHER (none when nothing was folded)."""
        return self.folded[attribute] if self.folded else ()

    @property
    def with_text(self) -> int:
        """How many items have product text."""
        return sum(1 for item in self.items if item.text)


def read_labelled_csv(
    path: str | Path,
    image_column: str,
    label_columns: str | Sequence[str],
    caption_column: str | None = None,
    text_columns: Sequence[str] = (),
    min_class_count: int = 1,
) -> LabelledData:
    """The usable rows of a labelled CSV, each attribute's classes with fewer than
    `min_class_count` examples folded into OTHER; CsvInputError with one sentence when it is
    unusable (checked from the file alone: no image is fetched)."""
    label_columns = (label_columns,) if isinstance(label_columns, str) else tuple(label_columns)
    info = inspect_csv(path)
    _check_columns(info.columns, image_column, label_columns, caption_column)
    check_text_columns(info, image_column, text_columns, "the labelled CSV")
    items, skipped = [], 0
    for row in iter_rows(path):
        image = row.get(image_column, "").strip()
        labels = tuple(row.get(column, "").strip() for column in label_columns)
        if not image or not all(labels):
            skipped += 1
            continue
        caption = row.get(caption_column, "").strip() if caption_column else ""
        items.append(LabelledImage(image, labels, caption, join_product_text(row, text_columns)))
    if text_columns and not any(item.text for item in items):
        raise CsvInputError(
            f"The text column(s) {', '.join(text_columns)} are empty in every usable row."
        )
    return fold_rare_classes(LabelledData(tuple(items), skipped, label_columns), min_class_count)


def _check_columns(
    columns: list[str],
    image_column: str,
    label_columns: tuple[str, ...],
    caption_column: str | None,
) -> None:
    """CsvInputError naming the first column the labelled CSV lacks, with its role."""
    wanted = [("Image", image_column), *(("Label", c) for c in label_columns)]
    wanted += [("Caption", caption_column)] if caption_column else []
    for role, column in wanted:
        if column not in columns:
            raise CsvInputError(
                f"{role} column '{column}' is not in the labelled CSV; its columns are: "
                f"{', '.join(columns)}."
            )


def fold_rare_classes(data: LabelledData, min_count: int) -> LabelledData:
    """`data` with each attribute's rare classes folded into OTHER; CsvInputError when an
    attribute is left with a single class."""
    given = [[item.labels[a] for item in data.items] for a in range(len(data.attributes))]
    folded = tuple(rare_classes(labels, min_count) for labels in given)
    columns = [fold_labels(labels, gone) for labels, gone in zip(given, folded, strict=True)]
    for column, labels, gone in zip(data.attributes, columns, folded, strict=True):
        problem = single_class_problem(column, sorted(set(labels)), gone)
        if problem:
            raise CsvInputError(problem)
    items = tuple(
        replace(item, labels=tuple(labels))
        for item, labels in zip(data.items, zip(*columns, strict=True), strict=True)
    )
    return LabelledData(items, data.skipped, data.attributes, folded)


def read_spec_data(spec: FinetuneSpec) -> LabelledData:
    """The labelled data of a fine-tune job's spec: its columns, its text, and for a linear
    probe of several attributes their rare classes folded. One attribute keeps every class, as
    it always has (a small class is warned about, not renamed), and a contrastive model names
    its classes in prompts, where "other" means nothing."""
    return read_labelled_csv(
        spec.data_csv,
        spec.image_column,
        spec.label_columns,
        spec.caption_column,
        spec.text_columns,
        spec.min_class_count if folds_rare_classes(spec.method, spec.label_columns) else 1,
    )


def folds_rare_classes(method: str, label_columns: tuple[str, ...]) -> bool:
    """Whether rare classes are folded into "other": for a probe of several attributes."""
    return method == "probe" and len(label_columns) > 1


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
    """The labelled images that loaded, their (main attribute's) classes and their
    train/validation split (indices into `items`), stratified by the main attribute and shared
    by every attribute."""

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

    def attribute_labels(self, attribute: int) -> list[str]:
        """Every item's label of attribute number `attribute` (0: the main one)."""
        return [item.labels[attribute] for item in self.items]

    def attribute_classes(self, attribute: int) -> list[str]:
        return sorted(set(self.attribute_labels(attribute)))
