"""Downloaded image bytes kept on disk, keyed by URL, within a size bound.

A second look at the same URL (the single-image page, a fine-tuning run over the same
training CSV, a bulk job re-run with other label sets) reads the file instead of downloading
again. A bulk job of 100,000 rows would otherwise leave about 10 GB here, so the cache has a
bound (CLIPLAB_IMAGE_CACHE_MB): when the bytes written take it over, the least recently used
entries are removed until it is back under 90 % of it. Reading an entry marks it used (its
modification time), since access times are often not kept. Several processes may share the
folder; each removes what it finds oldest, and a reader that loses a file to another process's
pruning simply downloads again.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

from core.storage import atomic_write_bytes

PRUNE_TO = 0.9


class ImageCache:
    """A folder of downloaded files, sharded by the first two hex digits of the URL's digest."""

    def __init__(self, folder: str | Path, max_bytes: int) -> None:
        self.folder = Path(folder)
        self.max_bytes = max_bytes
        self._size: int | None = None  # bytes in the folder as last counted, plus writes since
        self._size_lock = threading.Lock()
        self._prune_lock = threading.Lock()

    def path_for(self, url: str) -> Path:
        """Where the entry for `url` is (or would be) stored."""
        digest = hashlib.sha256(url.encode("utf-8")).hexdigest()
        return self.folder / digest[:2] / digest

    def read(self, url: str) -> bytes | None:
        """The stored bytes for `url`, or None; a hit becomes the most recently used entry."""
        path = self.path_for(url)
        try:
            data = path.read_bytes()
        except OSError:
            return None
        try:
            os.utime(path)
        except OSError:
            pass
        return data

    def discard(self, url: str) -> None:
        """Remove the entry for `url` (e.g. its bytes no longer decode)."""
        _unlink(self.path_for(url))

    def write(self, url: str, data: bytes) -> None:
        """Store `data` atomically, then prune if the folder went over its bound.

        A file larger than the whole bound is not kept; a full disk or a read-only folder only
        means no entry.
        """
        if len(data) > self.max_bytes:
            return
        try:
            atomic_write_bytes(self.path_for(url), data)
        except OSError:
            return
        with self._size_lock:
            if self._size is not None:
                self._size += len(data)
            over = self._size is None or self._size > self.max_bytes
        if over:
            self.prune()

    def size_bytes(self) -> int:
        """The bytes the entries take now (counted on disk)."""
        return sum(size for _, size, _ in self._entries())

    def prune(self) -> None:
        """Count the folder; if over the bound, remove the least recently used entries until it
        is within 90 % of it. One thread prunes at a time; the others carry on writing."""
        if not self._prune_lock.acquire(blocking=False):
            return
        try:
            entries = self._entries()
            total = sum(size for _, size, _ in entries)
            if total > self.max_bytes:
                target = int(self.max_bytes * PRUNE_TO)
                for _, size, path in sorted(entries, key=lambda entry: entry[0]):
                    if total <= target:
                        break
                    _unlink(path)
                    total -= size
            with self._size_lock:
                self._size = total
        finally:
            self._prune_lock.release()

    def _entries(self) -> list[tuple[float, int, Path]]:
        """(last used, bytes, path) of every file in the shards."""
        entries = []
        try:
            shards = [e for e in os.scandir(self.folder) if e.is_dir(follow_symlinks=False)]
        except OSError:
            return []
        for shard in shards:
            try:
                files = list(os.scandir(shard.path))
            except OSError:
                continue
            for entry in files:
                try:
                    stat = entry.stat(follow_symlinks=False)
                except OSError:  # removed meanwhile by another process
                    continue
                if entry.is_file(follow_symlinks=False):
                    entries.append((stat.st_mtime, stat.st_size, Path(entry.path)))
        return entries


def _unlink(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass
