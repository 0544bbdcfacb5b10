"""Product text (titles, descriptions) as CLIP text embeddings, beside the image: the text of a
row is its text columns joined in the order given, so cutting at the text tower's tokens drops
the last (least useful) part; each distinct text is encoded once and kept in a bounded cache,
because catalogue rows often share a title.

Texts are encoded in shapes that depend on each text alone: texts are grouped by their token
count rounded up to a multiple of `BUCKET`, padded to it, and run `BATCH` at a time (the last
batch filled with empty texts). So a text's embedding does not depend on which texts shared its
batch, and a resumed bulk job gives the same scores as an uninterrupted one; padding every text
to the tower's full 77 tokens would do that too, at about three times the cost for catalogue
titles (bench/product_text.py). A row's text is never logged.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence

import torch

BATCH = 8  # texts per text-tower call (padded to it)
BUCKET = 8  # texts are padded to their token count rounded up to a multiple of this
CACHE_SIZE = 8192  # distinct texts kept (2 KB each for a 512-wide embedding)
SEPARATOR = ". "


def join_product_text(row: Mapping[str, str], columns: Sequence[str]) -> str:
    """A row's product text: its non-empty text cells, stripped, in the order of `columns`."""
    parts = [(row.get(column) or "").strip() for column in columns]
    return SEPARATOR.join(part.rstrip(". ") or part for part in parts if part)


class ProductTexts:
    """Embeddings of product texts, each distinct text encoded once; thread-safe."""

    def __init__(
        self,
        encode_batch: Callable[[list[str], int], torch.Tensor],
        token_counts: Callable[[list[str]], list[int]],
        max_tokens: int,
        capacity: int = CACHE_SIZE,
    ) -> None:
        """`encode_batch(texts, length)` turns BATCH texts, each padded (or cut) to `length`
        tokens, into L2-normalised embeddings; `token_counts` says how many tokens each text
        has (cut at `max_tokens`)."""
        self._encode_batch, self._token_counts = encode_batch, token_counts
        self._max_tokens = max_tokens
        self._capacity = capacity
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()
        self.texts_encoded = 0  # distinct texts that ran through the text tower

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """One embedding per text (an empty text gets a row of zeros: no text to read)."""
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t and t not in self._cache))
            fresh = self._run(missing)
            found = {text: self._cache[text] for text in texts if text in self._cache}
            found.update(fresh)
            for text, embedding in fresh.items():
                self._keep(text, embedding)
        width = next(iter(found.values())).shape[-1] if found else None
        if width is None:
            return torch.zeros(len(texts), 0)
        zeros = torch.zeros(width)
        return torch.stack([found[t] if t else zeros for t in texts])

    def _run(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Encode `texts` grouped by padded length, in full batches (the last of each length
        filled with empty texts)."""
        if not texts:
            return {}
        by_length: dict[int, list[str]] = {}
        for text, count in zip(texts, self._token_counts(texts), strict=True):
            length = min(self._max_tokens, math.ceil(count / BUCKET) * BUCKET)
            by_length.setdefault(length, []).append(text)
        encoded = {}
        for length, group in by_length.items():
            for start in range(0, len(group), BATCH):
                chunk = group[start : start + BATCH]
                rows = self._encode_batch(chunk + [""] * (BATCH - len(chunk)), length)
                encoded.update(zip(chunk, rows[: len(chunk)], strict=True))
                self.texts_encoded += len(chunk)
        return encoded

    def _keep(self, text: str, embedding: torch.Tensor) -> None:
        self._cache[text] = embedding
        self._cache.move_to_end(text)
        if len(self._cache) > self._capacity:
            self._cache.popitem(last=False)

    def clear(self) -> None:
        """Forget every kept embedding."""
        with self._lock:
            self._cache.clear()
