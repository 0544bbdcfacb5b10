"""A linear-probe head: a linear classifier over L2-normalised CLIP image embeddings.

Trained by core/training/trainers.py (scikit-learn's logistic regression), saved beside the
CLIP weights of a trained model, and applied by ClipClassifier in place of the text tower.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from core.errors import UserError, short_list


class ClassMismatchError(UserError, ValueError):
    """Labels given for a model with its own classes are not those classes."""


@dataclass(frozen=True)
class ProbeHead:
    """softmax(W x + b) over the model's own classes."""

    classes: tuple[str, ...]
    weight: torch.Tensor  # (classes, embedding dim)
    bias: torch.Tensor  # (classes,)

    def probabilities(self, image_embeddings: torch.Tensor) -> torch.Tensor:
        logits = image_embeddings.float() @ self.weight.T + self.bias
        return logits.softmax(dim=-1)

    def predict(self, image_embeddings: torch.Tensor) -> list[str]:
        return [self.classes[i] for i in self.probabilities(image_embeddings).argmax(-1).tolist()]

    def order_for(self, labels: Sequence[str]) -> list[int]:
        """Column indices giving `labels`' order; ClassMismatchError unless they are exactly
        this model's classes (in any order)."""
        if sorted(labels) != sorted(self.classes):
            raise ClassMismatchError(
                f"This model was trained on its own {len(self.classes)} classes "
                f"({short_list(self.classes, 6)}); give "
                "exactly those labels, or none."
            )
        return [self.classes.index(label) for label in labels]

    @classmethod
    def from_sklearn(cls, model: object) -> ProbeHead:
        """The same probabilities as a fitted LogisticRegression's predict_proba."""
        weight = torch.tensor(model.coef_, dtype=torch.float32)  # type: ignore[attr-defined]
        bias = torch.tensor(model.intercept_, dtype=torch.float32)  # type: ignore[attr-defined]
        if weight.shape[0] == 1:  # binary: p(class 1) = sigmoid(z) = softmax([-z/2, z/2])[1]
            weight, bias = torch.cat([-weight / 2, weight / 2]), torch.cat([-bias / 2, bias / 2])
        classes = model.classes_  # type: ignore[attr-defined]
        return cls(tuple(str(c) for c in classes), weight, bias)


@dataclass(frozen=True)
class AttributeHead:
    """One trained attribute (a label column): its head, and for a model trained with product
    text, a head over the text embedding alone.

    `head` reads the image embedding, or [image ‖ text] when `fused`: a fused head was trained
    with the text dropped at random, so [image ‖ 0] (no text) is a use it knows.
    """

    name: str
    head: ProbeHead
    text_head: ProbeHead | None = None
    fused: bool = False

    @property
    def classes(self) -> tuple[str, ...]:
        return self.head.classes


@dataclass(frozen=True)
class TrainedHeads:
    """The heads of a trained linear-probe model: one per attribute, over the same embeddings."""

    attributes: tuple[AttributeHead, ...]

    @property
    def classes(self) -> tuple[str, ...]:
        """The first attribute's classes (a single-attribute model's classes)."""
        return self.attributes[0].classes

    @property
    def uses_text(self) -> bool:
        """Whether the model was trained on product text beside the image."""
        return any(a.fused for a in self.attributes)

    def attribute(self, name: str = "") -> AttributeHead:
        """The attribute called `name`; "" is the first (and a one-attribute model's only)."""
        if not name:
            return self.attributes[0]
        for attribute in self.attributes:
            if attribute.name == name:
                return attribute
        raise ClassMismatchError(
            f"This model has no attribute '{name}'; its attributes are "
            f"{short_list([a.name for a in self.attributes], 6)}."
        )

    def order_for(self, labels: Sequence[str], name: str = "") -> list[int]:
        """Column indices of `labels` in attribute `name`'s classes (see ProbeHead.order_for)."""
        return self.attribute(name).head.order_for(labels)

    @classmethod
    def single(cls, head: ProbeHead, name: str = "category") -> TrainedHeads:
        """A one-attribute, image-only model (what every probe was before attributes)."""
        return cls((AttributeHead(name, head),))
