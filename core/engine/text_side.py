"""The text side of a CLIP classifier: labels put into prompt templates, tokenized, encoded once
and kept (in memory, and on disk given a LabelEmbeddingCache), because a label set is reused for
every image while images change (see open_clip's build_zero_shot_classifier)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import CLIPModel

from core.engine.digests import text_tower_digest, weights_digest
from core.engine.label_embedding_cache import LabelEmbeddingCache, label_embedding_key
from core.engine.product_text import ProductTexts
from core.labels.label_set import DEFAULT_TEMPLATES

_TEXT_BATCH = 64  # prompts per text-tower call: larger batches cost memory, not speed
_LABEL_CACHE_SIZE = 32


def label_texts(labels: Sequence[str], prompts: Sequence[str] | None) -> tuple[str, ...]:
    """What the text tower encodes per label: its prompt when it has one, else the label."""
    if prompts is None:
        return tuple(labels)
    if len(prompts) != len(labels):
        raise ValueError("one prompt per label is needed")
    return tuple(prompt or label for label, prompt in zip(labels, prompts, strict=True))


def render_prompt(template: str, label: str) -> str:
    """Put `label` into `template` at "{}" (plain replacement, so braces in labels are safe)."""
    return template.replace("{}", label)


def template_prompts(labels: Sequence[str], templates: Sequence[str]) -> list[str]:
    """Every label in every template, template by template."""
    return [render_prompt(t, label) for t in templates for label in labels]


class TextSide:
    """Tokenizes and encodes label prompts, caching the embeddings; thread-safe (one lock
    guards the caches and the text tower)."""

    def __init__(
        self,
        model: CLIPModel,
        tokenizer: Any,
        device: torch.device,
        dtype: torch.dtype,
        disk_cache: LabelEmbeddingCache | None = None,
    ) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.device, self.dtype = device, dtype
        self.disk_cache = disk_cache
        self.max_tokens = int(model.config.text_config.max_position_embeddings)
        self.encoder_calls = 0
        self.checkpoint_folder: Path | None = None  # where the weights were read from, if known
        self._cache: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()
        self._digest: str | None = None
        self._this_thread = threading.local()  # per call: did encode_labels run the text tower?
        self.product_texts = ProductTexts(
            self._encode_padded, self._token_counts, self.max_tokens
        )

    def tokenize(self, texts: Sequence[str], tensors: bool = False) -> Any:
        """Token ids cut to the text tower's own positions (`max_position_embeddings`), whatever
        the tokenizer's saved config says: some checkpoints' tokenizers carry no
        model_max_length, and a longer prompt would crash the text tower."""
        return self.tokenizer(
            list(texts),
            padding=tensors,
            truncation=True,
            max_length=self.max_tokens,
            return_tensors="pt" if tensors else None,
        )

    def truncation_twins(
        self,
        labels: Sequence[str],
        templates: Sequence[str] = DEFAULT_TEMPLATES,
        prompts: Sequence[str] | None = None,
    ) -> list[tuple[str, ...]]:
        """Groups of labels that the model cannot tell apart because their prompts are the same
        once cut to the text tower's positions (long labels sharing their first ~77 tokens)."""
        texts = label_texts(labels, prompts)
        ids = self.tokenize(template_prompts(texts, templates))["input_ids"]
        per_label: dict[tuple, list[str]] = {}
        for index, label in enumerate(labels):
            key = tuple(tuple(ids[t * len(labels) + index]) for t in range(len(templates)))
            per_label.setdefault(key, []).append(label)
        return [tuple(group) for group in per_label.values() if len(group) > 1]

    def clear_cache(self) -> None:
        """Forget all label embeddings kept in memory (they are recomputed on next use)."""
        with self._lock:
            self._cache.clear()

    def has_embeddings(self, labels: Sequence[str], templates: Sequence[str]) -> bool:
        """Whether encode_labels would answer from its caches (memory or disk), without running
        the text tower."""
        with self._lock:
            if (tuple(labels), tuple(templates)) in self._cache:
                return True
            disk_key = self._disk_key(template_prompts(labels, templates), len(templates))
            return disk_key is not None and self.disk_cache.path_for(disk_key).is_file()

    def remember(
        self, labels: Sequence[str], templates: Sequence[str], embeddings: torch.Tensor
    ) -> None:
        """Keep label embeddings encoded elsewhere (by a Spark driver, for its workers), so
        encode_labels answers them from memory without running the text tower."""
        with self._lock:
            self._cache[(tuple(labels), tuple(templates))] = embeddings
            if len(self._cache) > _LABEL_CACHE_SIZE:
                self._cache.popitem(last=False)

    def encode_labels(self, labels: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
        """One L2-normalised embedding per label, the mean over all templates (CLIP ensembling),
        cached per (labels, templates)."""
        if not labels:
            raise ValueError("no labels to encode")
        if not templates:
            raise ValueError("no prompt templates")
        key = (tuple(labels), tuple(templates))
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return cached
            embeddings = self._uncached_labels(labels, templates)
            self._cache[key] = embeddings
            if len(self._cache) > _LABEL_CACHE_SIZE:
                self._cache.popitem(last=False)
            return embeddings

    def _uncached_labels(self, labels: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
        """Label embeddings from the disk cache, else from the text tower (then kept on disk).
        The caller holds the lock."""
        prompts = template_prompts(labels, templates)
        disk_key = self._disk_key(prompts, len(templates))
        if disk_key is not None:
            embeddings = self.disk_cache.get(disk_key, rows=len(labels))
            if embeddings is not None:
                return embeddings
        self._this_thread.ran_text_tower = True
        per_template = self._encode_texts(prompts).view(len(templates), len(labels), -1)
        embeddings = torch.nn.functional.normalize(per_template.mean(dim=0), dim=-1)
        if disk_key is not None:
            self.disk_cache.put(disk_key, embeddings)
        return embeddings

    def start_call(self) -> None:
        """Begin one call whose use of the text tower ran_text_tower() reports."""
        self._this_thread.ran_text_tower = False

    def ran_text_tower(self) -> bool:
        """Whether this thread's call since start_call() ran the text tower."""
        return bool(getattr(self._this_thread, "ran_text_tower", False))

    @torch.inference_mode()
    def _encode_texts(self, texts: list[str]) -> torch.Tensor:
        rows = []
        for start in range(0, len(texts), _TEXT_BATCH):
            tokens = self.tokenize(texts[start : start + _TEXT_BATCH], tensors=True).to(self.device)
            features = self.model.get_text_features(**tokens).pooler_output
            rows.append(torch.nn.functional.normalize(features.float(), dim=-1).cpu())
            self.encoder_calls += 1
        return torch.cat(rows)

    def _token_counts(self, texts: list[str]) -> list[int]:
        """How many tokens of each text the text tower reads."""
        return [len(ids) for ids in self.tokenize(texts)["input_ids"]]

    @torch.inference_mode()
    def _encode_padded(self, texts: list[str], length: int) -> torch.Tensor:
        """L2-normalised embeddings of texts each padded (or cut) to `length` tokens (shapes
        that depend on the texts alone: see core/engine/product_text.py), under the text
        tower's lock."""
        tokens = self.tokenizer(
            texts, padding="max_length", truncation=True, max_length=length, return_tensors="pt"
        ).to(self.device)
        with self._lock:
            features = self.model.get_text_features(**tokens).pooler_output
            self.encoder_calls += 1
        return torch.nn.functional.normalize(features.float(), dim=-1).cpu()

    def _disk_key(self, prompts: list[str], templates: int) -> str | None:
        """The disk cache's key for these prompts (None without a disk cache). The caller holds
        the lock. The text tower is identified once: by its weight files when the model came
        from a folder (no reading), else by hashing its weights (0.2 s for ViT-B/32)."""
        if self.disk_cache is None:
            return None
        if self._digest is None:
            files = weights_digest(self.checkpoint_folder)
            self._digest = f"files:{files}" if files else text_tower_digest(self.model)
        token_ids = self.tokenize(prompts)["input_ids"]
        precision = f"{self.device.type}|{self.dtype}"
        return label_embedding_key(self._digest, precision, token_ids, templates)
