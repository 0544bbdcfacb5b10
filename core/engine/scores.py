"""Scores: CLIP's softmax over candidate labels, and labels ranked by them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LabelScore:
    """One candidate label and its probability among all candidates."""

    label: str
    score: float


@dataclass(frozen=True)
class Prediction:
    """Every label for one image, best first, with how long scoring took."""

    ranked: list[LabelScore]
    seconds: float
    labels_from_cache: bool

    def top(self, k: int = 5) -> list[LabelScore]:
        """The k best labels."""
        return self.ranked[:k]


def probabilities(
    logit_scale: float, image_embeddings: torch.Tensor, label_embeddings: torch.Tensor
) -> torch.Tensor:
    """softmax(logit_scale * cosine): one row per image, one column per label, rows sum to 1."""
    logits = logit_scale * image_embeddings @ label_embeddings.T
    return logits.softmax(dim=-1)


def rank_labels(labels: Sequence[str], scores: Sequence[float]) -> list[LabelScore]:
    """Pair labels with scores and sort best first (ties keep the labels' order)."""
    ranked = sorted(zip(labels, scores, strict=True), key=lambda pair: -pair[1])
    return [LabelScore(label, float(score)) for label, score in ranked]
