"""One product (an image, and optionally its title or description) labelled with one or more
label sets (or a trained model's attributes): what the image says, what the text says, and the
label they decide together. The Single image page and `predict` show the same three views."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from PIL import Image

from core.engine.classifier import ClipClassifier
from core.engine.fusion import score_row, set_scorer, single_product_text
from core.engine.scores import LabelScore, rank_labels
from core.labels.label_set import LabelSet


@dataclass(frozen=True)
class ProductPrediction:
    """One label set's answer for one product: every label best first, as decided, and as the
    image alone and the text alone rank them (None: no text, or a model that cannot read it)."""

    name: str  # the label set's name, or the trained attribute
    ranked: list[LabelScore]
    image: list[LabelScore]
    text: list[LabelScore] | None
    decided_by: str
    seconds: float


def predict_product(
    classifier: ClipClassifier,
    image: Image.Image,
    label_sets: Sequence[LabelSet],
    text: str = "",
    weight: float = 0.5,
) -> list[ProductPrediction]:
    """Label one product with each of `label_sets`, from its image and (when given) its text."""
    started = time.perf_counter()
    image_embedding = classifier.encode_images([image])[0]
    return predict_from_embedding(classifier, image_embedding, label_sets, text, weight, started)


def predict_from_embedding(
    classifier: ClipClassifier,
    image_embedding: torch.Tensor,
    label_sets: Sequence[LabelSet],
    text: str = "",
    weight: float = 0.5,
    started: float | None = None,
) -> list[ProductPrediction]:
    """As predict_product, for an image already encoded (e.g. by the API's micro-batcher);
    `started` (perf_counter) is when the request began, for the reported seconds."""
    use = single_product_text(text, weight).checked()
    started = time.perf_counter() if started is None else started
    text_embedding = classifier.encode_texts([text.strip()])[0] if use.active else None
    answers = []
    for label_set in label_sets:
        scorer = set_scorer(classifier, label_set)
        image_probs = scorer.image(image_embedding[None])[0]
        row = score_row(scorer, image_probs, image_embedding, text_embedding, use)
        answers.append(
            ProductPrediction(
                label_set.attribute or label_set.name,
                rank_labels(scorer.labels, row.predicted.tolist()),
                rank_labels(scorer.labels, image_probs.tolist()),
                rank_labels(scorer.labels, row.text.tolist()) if row.text is not None else None,
                row.decided_by,
                time.perf_counter() - started,
            )
        )
    return answers


def prediction_views(answers: Sequence[ProductPrediction], top_k: int, with_text: bool) -> dict:
    """The labels part of a predict answer (see the module docstring): the first answer's
    top-k as `top`; with text each side's own and what decided; with several answers (a
    model's attributes) every one's under `attributes`."""

    def top(ranked: list[LabelScore] | None) -> list[dict] | None:
        if ranked is None:
            return None
        return [{"label": item.label, "score": item.score} for item in ranked[:top_k]]

    def views(answer: ProductPrediction) -> dict:
        found: dict = {"top": top(answer.ranked)}
        if with_text:
            found.update(
                image_top=top(answer.image), text_top=top(answer.text), decided_by=answer.decided_by
            )
        return found

    document = views(answers[0])
    if len(answers) > 1:
        document["attributes"] = {answer.name: views(answer) for answer in answers}
    return document


def own_label_sets(classifier: ClipClassifier) -> tuple[LabelSet, ...]:
    """A trained model's own classes as label sets, one per attribute (() for zero-shot)."""
    return tuple(
        LabelSet(name, classes, attribute=name) for name, classes in classifier.attributes
    )
