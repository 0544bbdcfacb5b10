"""The zero-shot baseline a fine-tune must beat: the frozen base model's image (and product
text) embeddings and its zero-shot predictions with the job's prompt template: from the image,
from the text, and both fused the way zero-shot labelling fuses them (core/engine/fusion.py).

Apart from the run and the methods because both use the embeddings: the linear probe trains on
them, the baseline classifies with them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from core.engine.classifier import ClipClassifier
from core.engine.fusion import DEFAULT_TEXT_WEIGHT, accuracy_by_weight, fuse

_EMBED_BATCH = 64
_TEXT_CHUNK = 512  # product texts per call (cancellation between chunks)


def embed_images(
    classifier: ClipClassifier, pixels: torch.Tensor, check_cancel: Callable[[], None]
) -> torch.Tensor:
    """Image embeddings of the (frozen) base model, 64 at a time, cancellable."""
    embeddings = []
    for start in range(0, len(pixels), _EMBED_BATCH):
        check_cancel()
        embeddings.append(classifier.encode_pixels(pixels[start : start + _EMBED_BATCH]))
    return torch.cat(embeddings)


def zero_shot_predictions(
    classifier: ClipClassifier, embeddings: torch.Tensor, classes: list[str], template: str
) -> list[str]:
    """The class whose prompt (`template` filled with its name) best matches each embedding."""
    return zero_shot_comparison(classifier, embeddings, None, classes, template)["zero_shot_image"]


def embed_texts(
    classifier: ClipClassifier, texts: list[str], check_cancel: Callable[[], None]
) -> torch.Tensor:
    """Product-text embeddings of the base model, each distinct text encoded once; a row of
    zeros where an item has no text (what a text-dropped training example looks like too)."""
    rows = []
    for start in range(0, len(texts), _TEXT_CHUNK):
        check_cancel()
        chunk = classifier.encode_texts(texts[start : start + _TEXT_CHUNK])
        rows.append(chunk if chunk.shape[-1] else torch.zeros(len(chunk), classifier.embedding_dim))
    return torch.cat(rows).float()


def zero_shot_comparison(
    classifier: ClipClassifier,
    image_embeddings: torch.Tensor,
    text_embeddings: torch.Tensor | None,
    classes: list[str],
    template: str,
) -> dict[str, list[str]]:
    """Zero-shot predictions from the image, and with product text also from the text alone
    and from both: (1 - w) * image + w * text with w = DEFAULT_TEXT_WEIGHT, as zero-shot
    labelling fuses them. An item without text (a zero row) has uniform text scores, so its
    fused label is its image's, as in labelling; its text-only label says nothing."""
    label_embeddings = classifier.encode_labels(classes, (template,))
    image = classifier.probabilities(image_embeddings, label_embeddings)
    found = {"zero_shot_image": image}
    if text_embeddings is not None:
        text = classifier.probabilities(text_embeddings, label_embeddings)
        found["zero_shot_text"] = text
        found["zero_shot_fused"] = fuse(image, text, DEFAULT_TEXT_WEIGHT)
    return {key: [classes[i] for i in p.argmax(dim=-1).tolist()] for key, p in found.items()}


def zero_shot_by_text_weight(
    classifier: ClipClassifier,
    image_embeddings: torch.Tensor,
    text_embeddings: torch.Tensor,
    classes: list[str],
    template: str,
    truth: list[str],
) -> list[tuple[float, float]]:
    """Zero-shot fusion's validation accuracy at text weights 0, 0.1, ... 1: the weight that
    suits this catalogue, for classify --text-weight."""
    label_embeddings = classifier.encode_labels(classes, (template,))
    image = classifier.probabilities(image_embeddings, label_embeddings)
    text = classifier.probabilities(text_embeddings, label_embeddings)
    return accuracy_by_weight(image, text, torch.tensor([classes.index(t) for t in truth]))
