"""The output columns of a bulk job: the input's columns, then the contract columns for the first
label set (predicted_category, confidence, top_categories, error), then three per further set."""

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

Ranked = list[tuple[str, float]]  # one label set's top-k for one image, best first


def set_columns(label_sets: tuple[LabelSet, ...]) -> list[tuple[str, str, str]]:
    """Columns (category, confidence, top list) of every label set after the first, named after
    the set and unique even for similar names. The first set's results are the contract columns
    (predicted_category, confidence, top_categories) and are not repeated."""
    columns, used = [], {"predicted"}  # "predicted_category" is the first set's
    for label_set in label_sets[1:]:
        prefix, n = label_set.column_prefix, 2
        while prefix in used:
            prefix, n = f"{label_set.column_prefix}_{n}", n + 1
        used.add(prefix)
        columns.append((f"{prefix}_category", f"{prefix}_confidence", f"{prefix}_top_categories"))
    return columns


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
    further = zip(label_sets[1:], set_columns(label_sets), strict=True)
    return [first] + [SetColumns(s.name, *columns) for s, columns in further]


def output_header(input_columns: list[str], label_sets: tuple[LabelSet, ...]) -> list[str]:
    """Input columns (less any that the output replaces), then the output columns."""
    added = list(OUTPUT_COLUMNS) + [c for triple in set_columns(label_sets) for c in triple]
    return [c for c in input_columns if c not in added] + added


def ranked_rows(probs: torch.Tensor, labels: Sequence[str], k: int) -> list[Ranked]:
    """Each row of `probs` (one column per label) as its top-k labels with scores, best first."""
    scores, indices = probs.topk(min(k, len(labels)), dim=-1)
    return [
        [(labels[i], float(score)) for score, i in zip(row_scores, row_indices, strict=True)]
        for row_scores, row_indices in zip(scores.tolist(), indices.tolist(), strict=True)
    ]


def output_cells(outputs: list[Ranked] | None, error: str | None, n_sets: int) -> list[str]:
    """The output cells for one row: the first set's in the contract columns, then the
    `n_sets` further sets' columns; empty categories and the error for a failed row."""
    if error is not None or outputs is None:
        return ["", "", "", error or "not processed"] + ["", "", ""] * n_sets
    cells = []
    for ranked in outputs:
        top = json.dumps([{"label": label, "score": round(score, 4)} for label, score in ranked])
        cells.append([ranked[0][0], f"{ranked[0][1]:.4f}", top])
    return [*cells[0], ""] + [cell for triple in cells[1 : 1 + n_sets] for cell in triple]


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
