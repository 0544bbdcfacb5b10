"""The contrastive method: fine-tune a copy of CLIP itself on (image, caption or prompted label)
pairs, epoch by epoch, judging each epoch on the validation split and stopping early when it no
longer improves; the saved model is the best epoch's weights.

Its own unit so the epoch loop reads as its named steps: one epoch, one training step with its
progress line, and the validation with the early-stopping decision. Fine-tuning on Spark
(core/spark/distributed_training.py) runs this same loop on every rank, overriding only how a
batch is trained, how the validation images are classified and how the trainer is made.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from core.engine.classifier import ClipClassifier
from core.engine.text_side import render_prompt
from core.engine.trained_models import save_trained_model
from core.training.data import TrainingExamples
from core.training.job import FinetuneSpec
from core.training.tracker import RunTracker
from core.training.trainers import ContrastiveTrainer, EarlyStopping, copy_model


class ContrastiveMethod:
    """Trains a copy of the base model on the training examples' pixels."""

    min_batch = 2  # the contrastive loss needs two images; smaller last batches are skipped

    def __init__(
        self,
        tracker: RunTracker,
        spec: FinetuneSpec,
        base: ClipClassifier,
        destination: Path,
        examples: TrainingExamples,
        pixels: torch.Tensor,
    ) -> None:
        self.tracker, self.spec, self.base, self.destination = tracker, spec, base, destination
        self.examples, self.pixels = examples, pixels
        self.step = 0  # training steps taken so far, over all epochs

    def train(self) -> list[str]:
        """Train until the last epoch or an early stop; returns the best weights' predictions
        for the validation images."""
        spec, examples = self.spec, self.examples
        self.model = copy_model(self.base.model)
        self.trainer = self._new_trainer()
        self.texts = [
            item.caption or render_prompt(spec.template, item.label) for item in examples.items
        ]
        self.truth = examples.val_truth
        steps_per_epoch = math.ceil(len(examples.train_idx) / spec.batch_size)
        self.tracker.save(
            status="training", message="Training", steps_total=steps_per_epoch * spec.epochs
        )
        stopper = EarlyStopping(spec.patience)
        rng = random.Random(spec.seed)
        torch.manual_seed(spec.seed)
        for epoch in range(1, spec.epochs + 1):
            self._epoch(epoch, rng)
            if self._validate(epoch, stopper):
                break
        self.trainer.restore_best()
        return self._classify_validation()

    def _new_trainer(
        self, wrap: Callable[[torch.nn.Module], torch.nn.Module] | None = None
    ) -> ContrastiveTrainer:
        """The trainer of the copy, with the spec's settings (`wrap`: see ContrastiveTrainer)."""
        spec = self.spec
        return ContrastiveTrainer(
            self.model,
            self.base.processor.tokenizer,
            self.base.device,
            train=spec.train,
            last_n=spec.last_n,
            learning_rate=spec.learning_rate,
            weight_decay=spec.weight_decay,
            wrap=wrap,
        )

    def _epoch(self, epoch: int, rng: random.Random) -> None:
        """One pass over the training images in a shuffled order (a last batch smaller than
        `min_batch` is skipped)."""
        order = list(self.examples.train_idx)
        rng.shuffle(order)
        for start in range(0, len(order), self.spec.batch_size):
            self.tracker.check_cancel()
            batch = order[start : start + self.spec.batch_size]
            if len(batch) < self.min_batch:
                continue
            self._step(epoch, batch)

    def _step(self, epoch: int, batch: list[int]) -> None:
        """One optimiser step on `batch`, then its progress line and state."""
        loss = self._train_step(batch)
        self.step += 1
        tracker, step = self.tracker, self.step
        left = tracker.elapsed() / step * (tracker.state.steps_total - step)
        tracker.log({"kind": "step", "epoch": epoch, "step": step, "loss": loss})
        tracker.save(epoch=epoch, step=step, loss=loss, seconds_left=left, message=f"Epoch {epoch}")

    def _train_step(self, batch: list[int]) -> float:
        """One optimiser step on the images `batch` indexes; returns its loss."""
        return self.trainer.step(self.pixels[batch], [self.texts[i] for i in batch])

    def _validate(self, epoch: int, stopper: EarlyStopping) -> bool:
        """Judge the epoch on the validation images, remember the weights if they are the best
        so far; True when training should stop early."""
        predicted = self._classify_validation()
        accuracy = float(np.mean([p == t for p, t in zip(predicted, self.truth, strict=True)]))
        stop = stopper.update(epoch, accuracy)
        if stopper.improved:
            self.trainer.remember_best()
        self.tracker.log(
            {"kind": "epoch", "epoch": epoch, "step": self.step, "val_accuracy": accuracy}
        )
        self.tracker.save(val_accuracy=accuracy, best_epoch=stopper.best_epoch)
        if stop:
            self.tracker.save(
                message=f"Stopped early after epoch {epoch}: no improvement in "
                f"{self.spec.patience} epochs"
            )
        return stop

    def _classify_validation(self) -> list[str]:
        return self.trainer.classify(
            self.pixels[self.examples.val_idx], self.examples.classes, self.spec.template
        )

    def save(self, metadata: dict) -> None:
        """Save the trained copy (after train)."""
        self.model.eval()
        save_trained_model(self.destination, self.model, self.base.processor, metadata)
