"""Image and product text together: how a row's label is decided from its image, its text, or
both (late fusion of the two score vectors, or a head trained on both), and which side decided.

Modes: `image` (the image alone), `text` (the text's CLIP embedding scored against the label
prompts) and `both`. Fusion is a weighted mean of the two probability vectors,
(1 - w) * image + w * text: still probabilities, and a confident side outweighs an unsure one.
A row without text falls back to its image; a row whose image failed but has text is labelled
from the text in `text` and `both` modes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.errors import UserError

if TYPE_CHECKING:  # kept light: the command line's parser reads the modes from here
    import torch

    from core.engine.classifier import ClipClassifier
    from core.labels.label_set import LabelSet

TEXT_MODES = ("image", "text", "both")
DEFAULT_TEXT_WEIGHT = 0.5
AGREE, IMAGE, TEXT = "both agree", "image", "text"


class TextUseError(UserError, ValueError):
    """Product-text settings that cannot be used."""


@dataclass(frozen=True)
class TextUse:
    """Which columns hold product text, and how it is used (mode and fusion weight)."""

    columns: tuple[str, ...] = ()
    mode: str = "image"
    weight: float = DEFAULT_TEXT_WEIGHT

    @property
    def active(self) -> bool:
        """Whether rows carry product text at all."""
        return bool(self.columns)

    def checked(self) -> TextUse:
        """This setting, or TextUseError with one sentence when it cannot be used."""
        if self.mode not in TEXT_MODES:
            raise TextUseError(f"Text mode '{self.mode}' is not one of {', '.join(TEXT_MODES)}.")
        if not 0.0 <= self.weight <= 1.0:
            raise TextUseError(f"The text weight must be between 0 and 1, not {self.weight:g}.")
        if self.mode != "image" and not self.columns:
            raise TextUseError(f"Text mode '{self.mode}' needs a product-text column.")
        return self


def single_product_text(text: str, weight: float = DEFAULT_TEXT_WEIGHT) -> TextUse:
    """How one product's text (a page's box, predict --text) is used: fused with the image
    when there is any."""
    if not text.strip():
        return TextUse((), "image", weight)
    return TextUse(("product text",), "both", weight)


@dataclass(frozen=True)
class SetScorer:
    """One label set's scoring functions on one model."""

    labels: tuple[str, ...]
    image: Callable[[torch.Tensor], torch.Tensor]
    text: Callable[[torch.Tensor], torch.Tensor] | None  # None: the model cannot read text
    joint: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None  # a head on both


def set_scorer(classifier: ClipClassifier, label_set: LabelSet) -> SetScorer:
    """The scoring functions of `label_set` (its attribute's heads on a trained model)."""
    prompts = label_set.prompts or None
    attribute = label_set.attribute
    return SetScorer(
        label_set.labels,
        classifier.scorer(label_set.labels, label_set.templates, prompts, attribute),
        classifier.text_scorer(label_set.labels, label_set.templates, prompts, attribute),
        classifier.joint_scorer(label_set.labels, attribute),
    )


def check_text_model(classifier: ClipClassifier, use: TextUse) -> None:
    """Refuse product text for a trained model that cannot read it, in one sentence."""
    if use.active and not reads_text(classifier):
        raise TextUseError(
            f"Model '{classifier.name}' was trained on images only: it cannot read product "
            "text; leave the text out, or use a zero-shot model or one trained with a text column."
        )


def reads_text(classifier: ClipClassifier) -> bool:
    """Whether the model can use product text: any zero-shot model, and trained models with a
    text head for every attribute."""
    probe = classifier.probe
    return probe is None or all(a.text_head is not None for a in probe.attributes)


def weighs_text(classifier: ClipClassifier) -> bool:
    """Whether a text weight means anything for the model: zero-shot fusion weighs the two
    scores; a head trained on image and text weighs them itself."""
    return classifier.probe is None


@dataclass(frozen=True)
class RowScores:
    """One row's probabilities over one label set: what decided, and each side's own view."""

    predicted: torch.Tensor | None  # None: neither the image nor the text could be read
    image: torch.Tensor | None
    text: torch.Tensor | None
    decided_by: str  # AGREE, IMAGE, TEXT, or "" when nothing was predicted


def fuse(image: torch.Tensor, text: torch.Tensor, weight: float) -> torch.Tensor:
    """Late fusion: (1 - weight) * image + weight * text, both probabilities over one set."""
    return (1.0 - weight) * image + weight * text


def score_row(
    scorer: SetScorer,
    image_probs: torch.Tensor | None,
    image_embedding: torch.Tensor | None,
    text_embedding: torch.Tensor | None,
    use: TextUse,
) -> RowScores:
    """Decide one row from its image scores (None: the image failed) and its text embedding
    (None: the row has no text). Every product is computed for this row alone, so a row's
    result does not depend on its neighbours."""
    text_probs = None
    if text_embedding is not None and scorer.text is not None:
        text_probs = scorer.text(text_embedding[None])[0]
    fused = None
    if image_probs is not None and text_probs is not None:
        if scorer.joint is not None and image_embedding is not None:
            fused = scorer.joint(image_embedding[None], text_embedding[None])[0]
        else:
            fused = fuse(image_probs, text_probs, use.weight)
    mode = "both" if scorer.joint is not None and use.active else use.mode
    if mode == "image":
        predicted = image_probs
    elif mode == "text":
        predicted = text_probs if text_probs is not None else image_probs
    else:
        predicted = next((p for p in (fused, image_probs, text_probs) if p is not None), None)
    decider = decided_by(predicted, image_probs, text_probs)
    return RowScores(predicted, image_probs, text_probs, decider)


def decided_by(
    predicted: torch.Tensor | None, image: torch.Tensor | None, text: torch.Tensor | None
) -> str:
    """Which side decided the label: AGREE when it is the label both image and text put
    first; else the side whose first label it is; else (a label neither put first: fusion, or a
    head trained on both, weighed them) the side that gave it the higher probability."""
    if predicted is None:
        return ""
    if image is None or text is None:
        return IMAGE if text is None else TEXT
    winner = int(predicted.argmax())
    image_top, text_top = int(image.argmax()), int(text.argmax())
    if image_top == text_top == winner:
        return AGREE
    if winner in (image_top, text_top):
        return IMAGE if winner == image_top else TEXT
    return IMAGE if image[winner] >= text[winner] else TEXT


WEIGHT_STEPS = tuple(i / 10 for i in range(11))


def accuracy_by_weight(
    image_probs: torch.Tensor,
    text_probs: torch.Tensor,
    truth: torch.Tensor,
    weights: tuple[float, ...] = WEIGHT_STEPS,
) -> list[tuple[float, float]]:
    """Accuracy of late fusion at each text weight, on rows whose true class index is `truth`:
    how a user finds the weight that suits their catalogue (0 is the image alone, 1 the
    text alone)."""
    found = []
    for weight in weights:
        right = fuse(image_probs, text_probs, weight).argmax(-1) == truth
        found.append((weight, float(right.float().mean())))
    return found
