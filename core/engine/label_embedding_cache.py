"""Label embeddings kept on disk, so that a label set is encoded once per model, not per process.

Encoding 1,000 labels with ViT-B/32's text tower takes about 8 s of CPU. The app keeps label
embeddings in memory, but forgets them when it restarts, and every command-line job is a new
process: without this cache each `classify` run with the same label set would pay again.

An entry is found by a digest of everything that determines its numbers: the text tower's
weights, the dtype and device type it ran in, and the token ids of every prompt (so the
labels, their order, the templates and the tokenizer all count). A model retrained under the
same name has other weights and so never reads an older model's entries. Entries are small
(1,000 labels x 512 floats = 2 MB), written atomically, and the least recently used are removed
beyond a fixed count. A damaged or unreadable entry is ignored and encoded again: the cache can
only save time, never change a result.

Hashing the text tower's weights takes about 0.2 s for ViT-B/32, more than encoding a small
label set, and a command-line run would pay it in every process. A model loaded from a folder
(a local checkpoint, a trained model, the hub cache's snapshot) is therefore identified by its
weight files instead: their resolved paths, sizes, modification times and inodes, which any
rewrite of the weights changes (the hub cache's files are even named by their content). Only a
model with no known folder has its text tower hashed.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from core.storage import atomic_write_bytes

_SUFFIX = ".safetensors"
_TENSOR = "embeddings"
DEFAULT_MAX_ENTRIES = 200


class LabelEmbeddingCache:
    """A folder of label-embedding matrices (float32, one row per label), keyed by digest."""

    def __init__(self, folder: str | Path, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self.folder = Path(folder)
        self.max_entries = max_entries

    def path_for(self, key: str) -> Path:
        """Where the entry for `key` is (or would be) stored."""
        if not key or not all(c in "0123456789abcdef" for c in key):
            raise ValueError("a cache key is a lowercase hex digest")
        return self.folder / f"{key}{_SUFFIX}"

    def get(self, key: str, rows: int) -> torch.Tensor | None:
        """The stored embeddings for `key`, if present, readable and `rows` long; else None."""
        from safetensors.torch import load

        path = self.path_for(key)
        try:
            data = path.read_bytes()
        except OSError:  # missing, or the folder is unusable
            return None
        try:
            tensor = load(data)[_TENSOR]
        except Exception:  # a damaged entry is treated as missing, and removed
            _discard(path)
            return None
        if tensor.dim() != 2 or tensor.shape[0] != rows or tensor.dtype != torch.float32:
            _discard(path)
            return None
        try:
            os.utime(path)  # most recently used: kept longest
        except OSError:
            pass
        return tensor

    def put(self, key: str, embeddings: torch.Tensor) -> None:
        """Store `embeddings`; a full disk or a read-only folder only means no entry."""
        from safetensors.torch import save

        data = save({_TENSOR: embeddings.detach().to("cpu", torch.float32).contiguous()})
        try:
            atomic_write_bytes(self.path_for(key), data)
            self._evict()
        except OSError:
            return

    def clear(self) -> None:
        """Remove every entry."""
        for path in self._entries():
            _discard(path)

    def _entries(self) -> list[Path]:
        try:
            return [p for p in self.folder.iterdir() if p.suffix == _SUFFIX]
        except OSError:
            return []

    def _evict(self) -> None:
        """Keep the `max_entries` most recently used entries."""
        entries = self._entries()
        if len(entries) <= self.max_entries:
            return

        def last_used(path: Path) -> float:
            try:
                return path.stat().st_mtime
            except OSError:
                return 0.0

        for path in sorted(entries, key=last_used)[: len(entries) - self.max_entries]:
            _discard(path)


def _discard(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def label_embedding_key(
    tower_digest: str, precision: str, token_ids: list[list[int]], templates: int
) -> str:
    """The cache key of the label embeddings that these prompts' token ids give, ensembled over
    `templates` templates, with a text tower of this digest run in this precision."""
    digest = hashlib.sha256(b"cliplab-label-embeddings-v1|")
    digest.update(f"{tower_digest}|{precision}|{templates}|{len(token_ids)}|".encode())
    for ids in token_ids:
        digest.update(",".join(map(str, ids)).encode() + b";")
    return digest.hexdigest()
