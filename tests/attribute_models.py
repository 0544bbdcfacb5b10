"""A trained model with several attributes, made without training: random probe heads over the
tiny CLIP, saved as the Fine-tune page would save them (for tests of everything that uses one)."""

from __future__ import annotations

from pathlib import Path

import torch

from core.engine.loading import load_classifier
from core.engine.probe import AttributeHead, ProbeHead, TrainedHeads
from core.engine.trained_models import model_folder, save_trained_model

ATTRIBUTES = {"baseColour": ("red", "green", "blue"), "shape": ("round", "square")}


def _head(classes: tuple[str, ...], width: int, seed: int) -> ProbeHead:
    generator = torch.Generator().manual_seed(seed)
    weight = 20 * torch.randn(len(classes), width, generator=generator)
    return ProbeHead(classes, weight, torch.zeros(len(classes)))


def save_attribute_model(
    data_dir: Path, base_model: Path, name: str = "catalogue", with_text: bool = False
) -> Path:
    """Save a probe model with one head per ATTRIBUTES entry; `with_text`: heads on
    [image ‖ text] and a text-only head each."""
    base = load_classifier(str(base_model), "cpu", with_probe=False)
    dim = base.embedding_dim
    attributes = []
    for seed, (attribute, classes) in enumerate(ATTRIBUTES.items()):
        head = _head(classes, 2 * dim if with_text else dim, seed)
        text_head = _head(classes, dim, 10 + seed) if with_text else None
        attributes.append(AttributeHead(attribute, head, text_head, fused=with_text))
    folder = model_folder(data_dir, name)
    metadata = {"name": name, "base_model": str(base_model), "method": "probe"}
    if with_text:
        metadata["text_columns"] = ["title"]
    heads = TrainedHeads(tuple(attributes))
    save_trained_model(folder, base.model, base.processor, metadata, heads)
    return folder
