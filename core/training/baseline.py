"""The zero-shot baseline a fine-tune must beat: the frozen base model's image embeddings and its
zero-shot predictions with the job's prompt template.

Apart from the run and the methods because both use the embeddings: the linear probe trains on
them, the baseline classifies with them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from core.engine.classifier import ClipClassifier

_EMBED_BATCH = 64


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
    label_embeddings = classifier.encode_labels(classes, (template,))
    best = classifier.probabilities(embeddings, label_embeddings).argmax(dim=-1)
    return [classes[i] for i in best.tolist()]
