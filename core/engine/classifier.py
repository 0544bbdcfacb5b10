"""A loaded CLIP model as a classifier: the image side encodes images, the text side encodes
labels, and scores follow CLIP's definition, softmax(logit_scale * cosine similarity) over the
candidate labels; a model with a linear-probe head scores its own classes instead."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from transformers import CLIPModel, CLIPProcessor

from core.engine.cpu_linear import use_onednn_linear
from core.engine.device import resolve_dtype
from core.engine.digests import vision_tower_digest
from core.engine.image_side import ImageSide, Prepared
from core.engine.label_embedding_cache import LabelEmbeddingCache
from core.engine.probe import TrainedHeads
from core.engine.scores import LabelScore, Prediction, probabilities, rank_labels
from core.engine.text_side import TextSide, label_texts
from core.errors import clip_text
from core.labels.label_set import DEFAULT_TEMPLATES, LabelSet


class ClipClassifier:
    """A CLIP model with its processor, split into `image_side` and `text_side`, and the
    scoring that joins them.

    Thread-safe for concurrent use by several Streamlit sessions: the label cache is guarded by a
    lock, and inference needs no shared mutable state.
    """

    def __init__(
        self,
        model: CLIPModel,
        processor: CLIPProcessor,
        name: str,
        device: torch.device,
        probe: TrainedHeads | None = None,
        label_disk_cache: LabelEmbeddingCache | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        self.name = name
        self.device = device
        self.dtype = dtype or resolve_dtype("auto", device)
        self.model = model.to(device=device, dtype=self.dtype).eval()
        if device.type == "cpu":
            use_onednn_linear(self.model)
        self.processor = processor
        self.probe = probe
        self.image_side = ImageSide(self.model, processor.image_processor, device, self.dtype)
        self.text_side = TextSide(
            self.model, processor.tokenizer, device, self.dtype, label_disk_cache
        )
        self._vision_digest: str | None = None

    # The image side, as callers have always reached it.
    @property
    def input_size(self) -> int:
        """Side in pixels of the square the image processor feeds to the vision tower."""
        return self.image_side.input_size

    def prepare(self, img: Image.Image) -> Prepared:
        """One image made ready for the vision tower (see ImageSide.prepare)."""
        return self.image_side.prepare(img)

    def pixels(self, prepared: Sequence[Prepared]) -> torch.Tensor:
        """The vision tower's input batch (CPU, float32) from prepared images."""
        return self.image_side.pixels(prepared)

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Resize, crop and normalise images into the vision tower's input (CPU, float32)."""
        return self.image_side.preprocess(images)

    def encode_pixels(self, pixels: torch.Tensor, pad_to: int | None = None) -> torch.Tensor:
        """L2-normalised embeddings for preprocessed images (see ImageSide.encode_pixels)."""
        return self.image_side.encode_pixels(pixels, pad_to)

    def encode_images(self, images: Sequence[Image.Image], batch_size: int = 32) -> torch.Tensor:
        """L2-normalised image embeddings, one row per image, float32 on the CPU."""
        return self.image_side.encode_images(images, batch_size)

    # The text side.
    @property
    def max_text_tokens(self) -> int:
        """How many tokens of a prompt the text tower reads."""
        return self.text_side.max_tokens

    @property
    def text_encoder_calls(self) -> int:
        """How many times the text tower has run (a batch of prompts each)."""
        return self.text_side.encoder_calls

    @property
    def label_disk_cache(self) -> LabelEmbeddingCache | None:
        """Where label embeddings are kept across processes, if anywhere."""
        return self.text_side.disk_cache

    @property
    def checkpoint_folder(self) -> Path | None:
        """The folder the weights were read from, if known (it names the label-cache entries)."""
        return self.text_side.checkpoint_folder

    @checkpoint_folder.setter
    def checkpoint_folder(self, folder: Path | None) -> None:
        self.text_side.checkpoint_folder = folder

    def tokenize(self, texts: Sequence[str], tensors: bool = False) -> Any:
        """Token ids cut to the text tower's own positions (see TextSide.tokenize)."""
        return self.text_side.tokenize(texts, tensors)

    def truncation_twins(
        self,
        labels: Sequence[str],
        templates: Sequence[str] = DEFAULT_TEMPLATES,
        prompts: Sequence[str] | None = None,
    ) -> list[tuple[str, ...]]:
        """Groups of labels the model cannot tell apart once prompts are cut to its length."""
        return self.text_side.truncation_twins(labels, templates, prompts)

    def clear_label_cache(self) -> None:
        """Forget all cached label embeddings (they are recomputed on next use)."""
        self.text_side.clear_cache()

    def has_label_embeddings(
        self, labels: Sequence[str], templates: Sequence[str] = DEFAULT_TEMPLATES
    ) -> bool:
        """Whether encode_labels would answer from its caches, without running the text tower."""
        return self.text_side.has_embeddings(labels, templates)

    def remember_label_embeddings(
        self, labels: Sequence[str], templates: Sequence[str], embeddings: torch.Tensor
    ) -> None:
        """Answer encode_labels(labels, templates) with `embeddings`, encoded elsewhere."""
        self.text_side.remember(labels, templates, embeddings)

    def encode_labels(
        self, labels: Sequence[str], templates: Sequence[str] = DEFAULT_TEMPLATES
    ) -> torch.Tensor:
        """One L2-normalised embedding per label, the mean over all templates (CLIP ensembling).

        Cached per (labels, templates) in memory, and on disk when the classifier has a disk
        cache, so scoring many images (or running many jobs) re-encodes no text.
        """
        return self.text_side.encode_labels(labels, templates)

    @property
    def vision_digest(self) -> str:
        """A digest of the vision tower's weights, computed once: it identifies which model
        made an image embedding, whatever the model is called or where it was loaded from."""
        if self._vision_digest is None:
            self._vision_digest = vision_tower_digest(self.model)
        return self._vision_digest

    @property
    def embedding_dim(self) -> int:
        """The width of an image (and text) embedding."""
        return int(self.model.config.projection_dim)

    # Scoring.
    @property
    def logit_scale(self) -> float:
        """CLIP's learned temperature, exp(logit_scale), capped at 100 as in the paper."""
        return float(self.model.logit_scale.detach().float().exp().clamp(max=100.0))

    def predict_one(
        self,
        image: Image.Image,
        labels: Sequence[str],
        templates: Sequence[str] = DEFAULT_TEMPLATES,
        prompts: Sequence[str] | None = None,
    ) -> Prediction:
        """Score one image against the labels, timing it and noting whether text was re-encoded.

        `prompts`, when given, holds per label the text put into the templates (a fuller
        description than the label itself); the results are still named by the labels.
        """
        self.text_side.start_call()
        started = time.perf_counter()
        ranked = self.classify([image], labels, templates, prompts=prompts)[0]
        cached = not self.text_side.ran_text_tower()
        return Prediction(ranked, time.perf_counter() - started, labels_from_cache=cached)

    def probabilities(
        self, image_embeddings: torch.Tensor, label_embeddings: torch.Tensor
    ) -> torch.Tensor:
        """softmax(logit_scale * cosine): one row per image, one column per label, rows sum to 1."""
        return probabilities(self.logit_scale, image_embeddings, label_embeddings)

    def classify(
        self,
        images: Sequence[Image.Image],
        labels: Sequence[str],
        templates: Sequence[str] = DEFAULT_TEMPLATES,
        batch_size: int = 32,
        prompts: Sequence[str] | None = None,
    ) -> list[list[LabelScore]]:
        """For each image, every label with its probability, best first (`prompts`: as for
        predict_one)."""
        score = self.scorer(labels, templates, prompts)
        probs = score(self.encode_images(images, batch_size))
        return [rank_labels(labels, row.tolist()) for row in probs]

    def scorer(
        self,
        labels: Sequence[str],
        templates: Sequence[str] = DEFAULT_TEMPLATES,
        prompts: Sequence[str] | None = None,
        attribute: str = "",
    ) -> Callable[[torch.Tensor], torch.Tensor]:
        """A function from image embeddings to probabilities over `labels`, in their order.

        Zero-shot: the labels' text embeddings (encoded once, cached); the same function scores
        product-text embeddings, which live in the same space. A model with linear-probe heads
        scores the own classes of its `attribute` ("" the first) instead (ClassMismatchError
        unless `labels` are exactly those), so it is used like any other model; a head trained
        on image and text reads the image with no text, as it learned to when text was dropped.
        """
        if self.probe is not None:
            trained = self.probe.attribute(attribute)
            head, order = trained.head, trained.head.order_for(labels)
            if trained.fused:
                return lambda e: head.probabilities(torch.cat([e, torch.zeros_like(e)], -1))[
                    :, order
                ]
            return lambda embeddings: head.probabilities(embeddings)[:, order]
        label_embeddings = self.encode_labels(label_texts(labels, prompts), templates)
        return lambda embeddings: self.probabilities(embeddings, label_embeddings)

    def text_scorer(
        self,
        labels: Sequence[str],
        templates: Sequence[str] = DEFAULT_TEMPLATES,
        prompts: Sequence[str] | None = None,
        attribute: str = "",
    ) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """A function from product-text embeddings to probabilities over `labels`: zero-shot,
        the text scored against the label prompts like an image; a trained model, its text
        head (None when it was trained without text and cannot read it)."""
        if self.probe is None:
            return self.scorer(labels, templates, prompts)
        trained = self.probe.attribute(attribute)
        if trained.text_head is None:
            return None
        head, order = trained.text_head, trained.text_head.order_for(labels)
        return lambda embeddings: head.probabilities(embeddings)[:, order]

    def joint_scorer(
        self, labels: Sequence[str], attribute: str = ""
    ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None:
        """For a head trained on [image ‖ text]: a function of both embeddings to probabilities
        over `labels`; None for every other model (zero-shot fuses the two scores instead)."""
        if self.probe is None or not self.probe.attribute(attribute).fused:
            return None
        head = self.probe.attribute(attribute).head
        order = head.order_for(labels)
        return lambda image, text: head.probabilities(torch.cat([image, text], -1))[:, order]

    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """L2-normalised embeddings of product texts (titles, descriptions), one row per text
        in the same space as images; cut to the text tower's tokens, each distinct text encoded
        once and kept (see ProductTexts)."""
        return self.text_side.product_texts.encode(texts)

    @property
    def classes(self) -> tuple[str, ...] | None:
        """The model's own classes when it has a linear probe (its first attribute's); None for
        zero-shot models."""
        return self.probe.classes if self.probe is not None else None

    @property
    def attributes(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """(attribute, classes) of each trained head; () for zero-shot models."""
        if self.probe is None:
            return ()
        return tuple((a.name, a.classes) for a in self.probe.attributes)


def truncation_problem(classifier: ClipClassifier, label_set: LabelSet) -> str | None:
    """One sentence about labels of `label_set` that truncation makes identical for this model,
    or None when the model can tell all of them apart."""
    twins = classifier.truncation_twins(
        label_set.labels, label_set.templates, label_set.prompts or None
    )
    if not twins:
        return None
    shown = "; ".join(
        f"{len(group)} labels beginning '{clip_text(group[0], 40)}'" for group in twins
    )
    return (
        f"Label set '{label_set.name}': some labels are identical in their first "
        f"{classifier.max_text_tokens} tokens, all the model reads, so it cannot tell them apart "
        f"({clip_text(shown, 200)}); shorten or reword them so they differ near the start."
    )
