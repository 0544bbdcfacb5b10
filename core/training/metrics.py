"""Classification metrics for comparing models honestly: accuracy, macro F1, per-class
precision/recall/F1 and the confusion matrix, all computed by scikit-learn."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)


@dataclass(frozen=True)
class ClassMetrics:
    label: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class Evaluation:
    """How well predictions match the truth on one labelled set of images."""

    accuracy: float
    macro_f1: float
    per_class: tuple[ClassMetrics, ...]
    labels: tuple[str, ...]
    confusion: tuple[tuple[int, ...], ...]  # rows: true label, columns: predicted label

    def to_dict(self) -> dict[str, object]:
        return {
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "labels": list(self.labels),
            "confusion": [list(row) for row in self.confusion],
            "per_class": [vars(c) for c in self.per_class],
        }

    @classmethod
    def from_dict(cls, data: dict) -> Evaluation:
        return cls(
            float(data["accuracy"]),
            float(data["macro_f1"]),
            tuple(ClassMetrics(**c) for c in data["per_class"]),
            tuple(data["labels"]),
            tuple(tuple(row) for row in data["confusion"]),
        )


def evaluate(truth: Sequence[str], predicted: Sequence[str], labels: Sequence[str]) -> Evaluation:
    """Metrics over `labels` (every class, even one never predicted or never present)."""
    if len(truth) != len(predicted):
        raise ValueError("truth and predictions differ in length")
    labels = list(labels)
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, predicted, labels=labels, zero_division=0
    )
    per_class = tuple(
        ClassMetrics(label, float(p), float(r), float(f), int(s))
        for label, p, r, f, s in zip(labels, precision, recall, f1, support, strict=True)
    )
    return Evaluation(
        accuracy=float(accuracy_score(truth, predicted)) if len(truth) else 0.0,
        macro_f1=float(f1_score(truth, predicted, labels=labels, average="macro", zero_division=0)),
        per_class=per_class,
        labels=tuple(labels),
        confusion=tuple(
            tuple(int(v) for v in row) for row in confusion_matrix(truth, predicted, labels=labels)
        ),
    )
