"""How each finished row of a bulk job gets its labels.

Images are scored per unique URL, in full batches; product text belongs to the row. A job
without product text writes its image's labels as they are. A job with product text keeps each
image's scores (one probability row per label set, from its batch) and decides each row when it
leaves the window: the rows' texts are encoded together (each distinct text once, see
core/engine/product_text.py), then every row and label set goes through the one decision of
core/engine/fusion.py (score_row), and the decided scores are ranked as the image-only ones are.
A row whose image failed but that has text keeps the image's error beside its label. The text
of a row is never logged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from core.bulk.columns import Ranked, Sides, ranked_rows
from core.engine.fusion import RowScores, SetScorer, TextUse, score_row, set_scorer
from core.engine.product_text import join_product_text

if TYPE_CHECKING:
    from core.bulk.row_window import Row, Task
    from core.engine.classifier import ClipClassifier
    from core.labels.label_set import LabelSet


@dataclass(frozen=True)
class RowOutput:
    """One row's results: each label set's top-k (None: no label), the image's error, the
    first set's image and text views (jobs with text), and the image's embedding to store."""

    outputs: list[Ranked | None] | None
    error: str | None
    sides: Sides | None
    embedding: np.ndarray | None

    @property
    def labelled(self) -> bool:
        """Whether the row has a category (of its first label set)."""
        return bool(self.outputs) and self.outputs[0] is not None  # type: ignore[index]


def job_scorers(classifier: ClipClassifier, label_sets: Sequence[LabelSet]) -> list[SetScorer]:
    """Each label set's scoring functions (a trained attribute's heads for its own set)."""
    return [set_scorer(classifier, label_set) for label_set in label_sets]


class RowLabeller:
    """Labels a job's finished rows with its label sets and its use of product text."""

    def __init__(
        self,
        classifier: ClipClassifier,
        scorers: Sequence[SetScorer],
        use: TextUse,
        top_k: int,
    ) -> None:
        self.classifier, self.scorers, self.use, self.top_k = classifier, scorers, use, top_k

    def label(self, rows: Sequence[Row]) -> list[RowOutput]:
        """The results of `rows`, whose images are done (encoded or failed)."""
        if not rows:
            return []
        if not self.use.active:
            return [
                RowOutput(row.task.outputs, row.task.error, None, _stored(row.task))
                for row in rows
            ]
        texts = self.text_embeddings([row.values for row in rows])
        labelled = []
        for row, text in zip(rows, texts, strict=True):
            task = row.task
            image = torch.from_numpy(task.embedding) if task.embedding is not None else None
            outputs, sides = self.decide(task.probs, image, text)
            labelled.append(RowOutput(outputs, task.error, sides, _stored(task)))
        return labelled

    def text_embeddings(self, rows: Sequence[Mapping[str, str]]) -> list[torch.Tensor | None]:
        """Each row's product-text embedding, None for a row without text; one call encodes
        them all (each distinct text once)."""
        texts = [join_product_text(row, self.use.columns) for row in rows]
        encoded = self.classifier.encode_texts(texts)
        return [encoded[i] if text else None for i, text in enumerate(texts)]

    def decide(
        self,
        image_probs: Sequence[torch.Tensor] | None,
        image_embedding: torch.Tensor | None,
        text_embedding: torch.Tensor | None,
    ) -> tuple[list[Ranked | None], Sides]:
        """One row's top-k per label set from its image scores (one row per set; None: the
        image failed) and its text, and the first set's image and text views."""
        outputs, decided = [], []
        for index, scorer in enumerate(self.scorers):
            probs = image_probs[index] if image_probs is not None else None
            row = score_row(scorer, probs, image_embedding, text_embedding, self.use)
            decided.append(row)
            ranked = None
            if row.predicted is not None:
                ranked = ranked_rows(row.predicted[None], scorer.labels, self.top_k)[0]
            outputs.append(ranked)
        return outputs, _sides(decided[0], self.scorers[0].labels)


def _sides(row: RowScores, labels: Sequence[str]) -> Sides:
    """The first label of each side (empty when that side had nothing to say) and what
    decided."""

    def first(probs: torch.Tensor | None) -> str:
        return labels[int(probs.argmax())] if probs is not None else ""

    return first(row.image), first(row.text), row.decided_by


def _stored(task: Task) -> np.ndarray | None:
    """The image embedding kept for a row: none when its image failed."""
    return task.embedding if task.error is None else None
