"""The output columns of a bulk job: the input's columns, then the contract columns for the first
label set (predicted_category, confidence, top_categories, error), then, for a job with product
text, what the first set's image and text said and which decided (image_category,
text_category, decided_by), then three per further set.

A job whose label sets are a trained model's attributes (two or more) gives every attribute its
own three columns, the first attribute too: `<attribute>_category` and so on for each, while the
contract columns repeat the first attribute's, so a reader of one label keeps working.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from core.bulk.csv_input import CsvInputError
from core.labels.label_set import LabelSet

if TYPE_CHECKING:
    import torch

OUTPUT_COLUMNS = ("predicted_category", "confidence", "top_categories", "error")
TEXT_COLUMNS = ("image_category", "text_category", "decided_by")

Ranked = list[tuple[str, float]]  # one label set's top-k for one image, best first
Sides = tuple[str, str, str]  # the first set's image category, text category, and what decided


def repeats_first(label_sets: Sequence[LabelSet]) -> bool:
    """Whether the sets are a trained model's attributes (two or more), each with its own
    columns, the first too."""
    return len(label_sets) > 1 and bool(label_sets[0].attribute)


def set_columns(label_sets: tuple[LabelSet, ...]) -> list[tuple[str, str, str]]:
    """Columns (category, confidence, top list) of the label sets that have their own, named
    after the set and unique even for similar names: every set after the first, whose results
    are the contract columns (predicted_category, confidence, top_categories); every attribute,
    the first too, of a trained model's attributes."""
    columns, used = [], {"predicted"}  # "predicted_category" is the first set's
    own = label_sets if repeats_first(label_sets) else label_sets[1:]
    for label_set in own:
        prefix, n = label_set.column_prefix, 2
        while prefix in used:
            prefix, n = f"{label_set.column_prefix}_{n}", n + 1
        used.add(prefix)
        columns.append((f"{prefix}_category", f"{prefix}_confidence", f"{prefix}_top_categories"))
    return columns


def first_set_column(label_sets: tuple[LabelSet, ...]) -> str | None:
    """The category column repeating the first set's (a trained model's first attribute), which
    a person's corrections of the first set also apply to; None when there is none."""
    return set_columns(label_sets)[0][0] if repeats_first(label_sets) else None


@dataclass(frozen=True)
class SetColumns:
    """Where one label set's results are in the output."""

    name: str
    category: str
    confidence: str
    top: str


def result_columns(label_sets: tuple[LabelSet, ...]) -> list[SetColumns]:
    """Every label set's output columns, the first set's being the contract columns."""
    first = SetColumns(label_sets[0].name, "predicted_category", "confidence", "top_categories")
    own = set_columns(label_sets)[1:] if repeats_first(label_sets) else set_columns(label_sets)
    further = zip(label_sets[1:], own, strict=True)
    return [first] + [SetColumns(s.name, *columns) for s, columns in further]


@dataclass(frozen=True)
class OutputLayout:
    """The columns a job adds after the input's, and each row's cells in them."""

    label_sets: tuple[LabelSet, ...]
    text: bool = False  # the job reads product text: TEXT_COLUMNS follow the first set's

    def added(self) -> list[str]:
        """The output columns, in order."""
        text = list(TEXT_COLUMNS) if self.text else []
        own = [c for triple in set_columns(self.label_sets) for c in triple]
        return list(OUTPUT_COLUMNS) + text + own

    def header(self, input_columns: list[str]) -> list[str]:
        """Input columns (less any that the output replaces), then the output columns."""
        added = self.added()
        return [c for c in input_columns if c not in added] + added

    def cells(
        self,
        outputs: Sequence[Ranked | None] | None,
        error: str | None,
        sides: Sides | None = None,
    ) -> list[str]:
        """One row's output cells: each set's top-k (None: no label for that set; `outputs`
        None: none at all), the error (kept beside a label when the text decided a row whose
        image failed), and for a text job the first set's image and text views."""
        per_set = list(outputs) if outputs is not None else [None] * len(self.label_sets)
        first = per_set[0]
        cells = [*_set_cells(first), error or ("" if first is not None else "not processed")]
        if self.text:
            cells += list(sides or ("", "", ""))
        own = per_set if repeats_first(self.label_sets) else per_set[1:]
        return cells + [cell for ranked in own for cell in _set_cells(ranked)]


def _set_cells(ranked: Ranked | None) -> list[str]:
    """One set's category, confidence and top list (JSON) for one row; empty for no label."""
    if not ranked:
        return ["", "", ""]
    top = json.dumps([{"label": label, "score": round(score, 4)} for label, score in ranked])
    return [ranked[0][0], f"{ranked[0][1]:.4f}", top]


def output_header(
    input_columns: list[str], label_sets: tuple[LabelSet, ...], text: bool = False
) -> list[str]:
    """Input columns (less any that the output replaces), then the output columns."""
    return OutputLayout(label_sets, text).header(input_columns)


def ranked_rows(probs: torch.Tensor, labels: Sequence[str], k: int) -> list[Ranked]:
    """Each row of `probs` (one column per label) as its top-k labels with scores, best first."""
    scores, indices = probs.topk(min(k, len(labels)), dim=-1)
    return [
        [(labels[i], float(score)) for score, i in zip(row_scores, row_indices, strict=True)]
        for row_scores, row_indices in zip(scores.tolist(), indices.tolist(), strict=True)
    ]


def check_results_header(path: Path, header: list[str]) -> None:
    """Refuse to add rows to results whose columns are not the ones this version writes (a
    job made by an earlier version, whose extra label sets had other columns)."""
    with open(path, encoding="utf-8", newline="") as handle:
        existing = next(csv.reader(handle), [])
    if existing != header:
        raise CsvInputError(
            "This job's results have other columns than this version of the app writes (the "
            "job was made by an earlier version); start it again instead of resuming."
        )
