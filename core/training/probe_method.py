"""The linear-probe method: a logistic regression on the frozen base model's image embeddings,
its regularisation chosen on the validation split; the saved model is the base model plus the
probe head.

Its own unit so the run only orchestrates: train, predict the validation images, save.
"""

from __future__ import annotations

from pathlib import Path

import torch

from core.engine.classifier import ClipClassifier
from core.engine.probe import TrainedHeads
from core.engine.trained_models import save_trained_model
from core.training.data import TrainingExamples
from core.training.tracker import RunTracker
from core.training.trainers import train_probe


class ProbeMethod:
    """Trains a probe head on given embeddings (of every example, in `examples` order)."""

    def __init__(
        self,
        tracker: RunTracker,
        base: ClipClassifier,
        destination: Path,
        examples: TrainingExamples,
        embeddings: torch.Tensor,
    ) -> None:
        self.tracker, self.base, self.destination = tracker, base, destination
        self.examples, self.embeddings = examples, embeddings

    def train(self) -> list[str]:
        """Fit the head, trying each C; returns its predictions for the validation images."""
        features = self.embeddings.numpy()
        train_idx, val_idx, labels = (
            self.examples.train_idx,
            self.examples.val_idx,
            self.examples.labels,
        )
        self.head, self.chosen_c = train_probe(
            features[train_idx],
            [labels[i] for i in train_idx],
            features[val_idx],
            [labels[i] for i in val_idx],
            on_candidate=self._candidate,
        )
        return self.head.predict(torch.from_numpy(features[val_idx]))

    def _candidate(self, c: float, accuracy: float) -> None:
        self.tracker.check_cancel()
        self.tracker.log({"kind": "probe", "c": c, "val_accuracy": accuracy})
        self.tracker.save(
            status="training",
            message=f"Logistic regression, C={c:g}: validation accuracy {accuracy:.1%}",
        )

    def save(self, metadata: dict) -> None:
        """Save the base model with the trained head (after train)."""
        head = self.head
        save_trained_model(
            self.destination,
            self.base.model.float(),
            self.base.processor,
            {**metadata, "probe_c": self.chosen_c},
            heads=TrainedHeads.single(head),
        )
