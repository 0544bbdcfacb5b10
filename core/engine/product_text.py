"""Product text (titles, descriptions) as CLIP text embeddings, beside the image: the text of a
row is its text columns joined in the order given, so cutting at the text tower's tokens drops
the last (least useful) part; each distinct text is encoded once and kept in a bounded cache,
because catalogue rows often share a title.

Texts are encoded in fixed-shape batches (always `BATCH` texts, every one padded to the text
tower's full length), so a text's embedding does not depend on which texts shared its batch:
a resumed bulk job gives the same scores as an uninterrupted one. A row's text is never logged.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence

import torch

BATCH = 16  # texts per text-tower call (padded to it)
CACHE_SIZE = 8192  # distinct texts kept (2 KB each for a 512-wide embedding)
SEPARATOR = ". "


def join_product_text(row: Mapping[str, str], columns: Sequence[str]) -> str:
    """A row's product text: its non-empty text cells, stripped, in the order of `columns`."""
    parts = [(row.get(column) or "").strip() for column in columns]
    return SEPARATOR.join(part.rstrip(". ") or part for part in parts if part)


class ProductTexts:
    """Embeddings of product texts, each distinct text encoded once; thread-safe."""

    def __init__(
        self, encode_batch: Callable[[list[str]], torch.Tensor], capacity: int = CACHE_SIZE
    ) -> None:
        """`encode_batch` turns exactly BATCH texts into L2-normalised embeddings."""
        self._encode_batch = encode_batch
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
        """Encode `texts` in full batches (the last padded with empty texts)."""
        encoded = {}
        for start in range(0, len(texts), BATCH):
            chunk = texts[start : start + BATCH]
            rows = self._encode_batch(chunk + [""] * (BATCH - len(chunk)))
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
