"""The linear-probe method: per attribute, logistic regressions on the frozen base model's
embeddings, each one's regularisation chosen on the validation split; the saved model is the
base model plus one head per attribute.

With product text, each attribute gets three probes, judged side by side with zero-shot: on the
image alone, on the text alone, and on [image ‖ text]. The last is saved (with the text-only one
beside it); it is trained with text dropout, so that a product without a title still labels
well from its image: besides every training example as it is, a seeded random share
`text_dropout` of the examples that have text is added once more with the text zeroed, the way
an item without text reaches the head. Adding copies rather than zeroing the text of that share
in place keeps every image-text pair the data has (small data sets need them all) while the
head still learns the no-text case from the same share of examples. Its regularisation is
chosen on the validation images both with their text and with it hidden: judged with text
alone, the strongest regularisation often ties for best while leaning on the text so hard that
the image alone no longer decides anything.

Its own unit so the run only orchestrates: train, predict the validation images, save.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from core.engine.classifier import ClipClassifier
from core.engine.probe import AttributeHead, ProbeHead, TrainedHeads
from core.engine.trained_models import save_trained_model
from core.training.baseline import zero_shot_by_text_weight, zero_shot_comparison
from core.training.comparison import MODELS, AttributeOutcome
from core.training.data import TrainingExamples
from core.training.job import FinetuneSpec
from core.training.tracker import RunTracker
from core.training.trainers import train_probe


def with_text_dropped(
    image: np.ndarray, text: np.ndarray, labels: list[str], rate: float, seed: int
) -> tuple[np.ndarray, list[str]]:
    """Training rows for an [image ‖ text] head: every row as it is, then again, with the text
    zeroed, a seeded random `rate` share of the rows that have text."""
    has_text = np.flatnonzero(np.abs(text).sum(axis=1) > 0)
    count = round(rate * len(has_text))
    hidden = np.sort(np.random.default_rng(seed).choice(has_text, size=count, replace=False))
    rows = np.concatenate(
        [
            np.concatenate([image, text], axis=1),
            np.concatenate([image[hidden], np.zeros_like(text[hidden])], axis=1),
        ]
    )
    return rows, [*labels, *(labels[i] for i in hidden)]


class ProbeMethod:
    """Trains the probe heads of every attribute on given embeddings (of every example, in
    `examples` order): image embeddings, and product-text embeddings (zero rows where an item
    has none) or None when the job reads no text."""

    def __init__(
        self,
        tracker: RunTracker,
        spec: FinetuneSpec,
        base: ClipClassifier,
        destination: Path,
        examples: TrainingExamples,
        embeddings: tuple[torch.Tensor, torch.Tensor | None],
    ) -> None:
        self.tracker, self.spec, self.base, self.destination = tracker, spec, base, destination
        self.examples = examples
        self.image = embeddings[0].numpy()
        self.text = embeddings[1].numpy() if embeddings[1] is not None else None
        self.heads: list[AttributeHead] = []
        self.outcomes: list[AttributeOutcome] = []

    def train(self, folded: tuple[tuple[str, ...], ...] = ()) -> list[AttributeOutcome]:
        """Zero-shot predictions and the probes of every attribute (`folded`: per attribute the
        classes folded into "other", for the result); their validation predictions."""
        for number, name in enumerate(self.spec.label_columns):
            gone = folded[number] if folded else ()
            self.outcomes.append(self._attribute(number, name, gone))
        return self.outcomes

    def _attribute(self, number: int, name: str, folded: tuple[str, ...]) -> AttributeOutcome:
        """One attribute: zero-shot, the probes, and the head to save."""
        examples, image, text = self.examples, self.image, self.text
        train, val = examples.train_idx, examples.val_idx
        labels = examples.attribute_labels(number)
        classes = examples.attribute_classes(number)
        train_y, val_y = [labels[i] for i in train], [labels[i] for i in val]
        val_text = torch.from_numpy(text[val]) if text is not None else None
        predictions = zero_shot_comparison(
            self.base, torch.from_numpy(image[val]), val_text, classes, self.spec.template
        )
        fit = _Fits(self, name, train_y, val_y)
        image_head = fit("probe_image", image[train], image[val])
        predictions["probe_image"] = fit.predicted["probe_image"]
        if text is None:
            self.heads.append(AttributeHead(name, image_head))
            saved, baseline = "probe_image", "zero_shot_image"
        else:
            text_head = fit("probe_text", text[train], text[val])
            rows, rows_y = with_text_dropped(
                image[train], text[train], train_y, self.spec.text_dropout, self.spec.seed
            )
            val_both = np.concatenate([image[val], text[val]], axis=1)
            hidden = np.concatenate([image[val], np.zeros_like(text[val])], axis=1)
            both = fit("probe_both", rows, val_both, rows_y, also_judged_on=hidden)
            fit.predicted["probe_both_no_text"] = both.predict(torch.from_numpy(hidden))
            self.heads.append(AttributeHead(name, both, text_head, fused=True))
            saved, baseline = "probe_both", "zero_shot_fused"
        predictions.update(fit.predicted)
        weights = []
        if val_text is not None:
            val_image, template = torch.from_numpy(image[val]), self.spec.template
            weights = zero_shot_by_text_weight(
                self.base, val_image, val_text, classes, template, val_y
            )
        return AttributeOutcome(
            name, classes, val_y, predictions, saved, baseline, folded, fit.chosen_c, weights
        )

    def save(self, metadata: dict) -> None:
        """Save the base model with every attribute's head (after train)."""
        first = self.outcomes[0]
        save_trained_model(
            self.destination,
            self.base.model.float(),
            self.base.processor,
            {**metadata, "probe_c": first.chosen_c[first.saved]},
            heads=TrainedHeads(tuple(self.heads)),
        )


class _Fits:
    """The probes of one attribute: each fitted with its C chosen on validation, logged as the
    job's progress; remembers each one's validation predictions and C."""

    def __init__(self, method: ProbeMethod, name: str, train_y: list[str], val_y: list[str]):
        self.method, self.name, self.train_y, self.val_y = method, name, train_y, val_y
        self.predicted: dict[str, list[str]] = {}
        self.chosen_c: dict[str, float] = {}

    def __call__(
        self,
        key: str,
        train_x: np.ndarray,
        val_x: np.ndarray,
        train_y: list[str] | None = None,
        also_judged_on: np.ndarray | None = None,
    ) -> ProbeHead:
        """The probe `key` fitted on (train_x, train_y or the attribute's training labels),
        its C chosen on val_x, and on `also_judged_on` too: the same validation images in
        another form (their text hidden), so that C suits both."""
        tracker, features = self.method.tracker, MODELS[key].removeprefix("probe, ")
        judged_x, judged_y = val_x, self.val_y
        if also_judged_on is not None:
            judged_x = np.concatenate([val_x, also_judged_on])
            judged_y = [*self.val_y, *self.val_y]

        def candidate(c: float, accuracy: float) -> None:
            tracker.check_cancel()
            tracker.log(
                {
                    "kind": "probe",
                    "attribute": self.name,
                    "features": features,
                    "c": c,
                    "val_accuracy": accuracy,
                }
            )
            tracker.save(
                status="training",
                message=f"Logistic regression for '{self.name}' ({features}), C={c:g}: "
                f"validation accuracy {accuracy:.1%}",
            )

        head, self.chosen_c[key] = train_probe(
            train_x, train_y or self.train_y, judged_x, judged_y, on_candidate=candidate
        )
        self.predicted[key] = head.predict(torch.from_numpy(val_x))
        return head
