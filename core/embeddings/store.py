"""The on-disk form of a job's image embeddings: one fixed-width record per input row.

    embeddings.f32   row i at bytes [i * dim * 4, (i + 1) * dim * 4), float32; all zeros for a
                     row without an embedding (a failed row: real embeddings have norm 1)
    embeddings.json  the model that made them (name, vision-tower digest), dim, dtype, rows

Fixed-width records make the file behave like results.csv: appended as rows are written, cut
back to the last complete row on resume, and read by row index through a memory map, so a job
of millions of rows is never loaded whole (2 KB per row at ViT-B/32's 512 dimensions).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from core.errors import UserError
from core.storage import atomic_write_json, read_json

DATA_FILE, META_FILE = "embeddings.f32", "embeddings.json"
# float32, not float16: at CLIP's logit scale (100) float16 rounding moved a score by up to
# 1.1e-5 but changed the best label of 0.05 % of images (bench/relabel.py); a re-label must
# give the same top-1 as a fresh classify on every row. 2 KB per row at 512 dimensions.
DTYPE = np.float32
FORMAT = "clip-labeler/image-embeddings-1"


class NoEmbeddingsError(UserError, ValueError):
    """The job has no stored image embeddings, or another model made them; one sentence."""


@dataclass(frozen=True)
class ModelIdentity:
    """Which model made a set of embeddings: its name and a digest of its vision tower."""

    name: str
    vision_digest: str
    dim: int


class EmbeddingWriter:
    """Appends one record per output row, in row order; resumable like the results file."""

    def __init__(self, folder: str | Path, identity: ModelIdentity, rows_done: int) -> None:
        """Open `folder`'s embeddings for a run that has `rows_done` rows already written:
        records past them are cut off, missing ones (rows written before embeddings were kept)
        are filled with zeros, and a store made by another model is started again."""
        self.folder, self.identity = Path(folder), identity
        self._record = np.zeros(identity.dim, dtype=DTYPE)
        path = self.folder / DATA_FILE
        if rows_done == 0 or _identity(self.folder) != identity:
            path.write_bytes(b"")
        self._handle = open(path, "r+b")
        self._handle.truncate(min(path.stat().st_size, rows_done * self._record.nbytes))
        self._handle.seek(0, 2)
        self.rows = self._handle.tell() // self._record.nbytes
        while self.rows < rows_done:
            self.append(None)

    def append(self, embedding: np.ndarray | None) -> None:
        """One row's embedding (None: the row has none)."""
        record = self._record if embedding is None else np.asarray(embedding, dtype=DTYPE)
        self._handle.write(record.tobytes())
        self.rows += 1

    def flush(self) -> None:
        """Make the records written so far durable, and say how many there are."""
        self._handle.flush()
        meta = {"format": FORMAT, **asdict(self.identity), "rows": self.rows}
        meta["dtype"] = np.dtype(DTYPE).name
        atomic_write_json(self.folder / META_FILE, meta)

    def close(self) -> None:
        self.flush()
        self._handle.close()


def _identity(folder: Path) -> ModelIdentity | None:
    meta = read_meta(folder)
    return None if meta is None else _identity_in(meta)


def _identity_in(meta: dict) -> ModelIdentity:
    return ModelIdentity(meta["name"], meta["vision_digest"], int(meta["dim"]))


def read_meta(folder: str | Path) -> dict | None:
    """The store's description, or None when the folder has no (readable) store."""
    path = Path(folder) / META_FILE
    if not path.is_file() or not (Path(folder) / DATA_FILE).is_file():
        return None
    try:
        meta = read_json(path)
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == FORMAT else None


class EmbeddingStore:
    """Read access to a folder's embeddings, by row range, without loading them all."""

    def __init__(self, folder: str | Path) -> None:
        meta = read_meta(folder)
        if meta is None:
            raise FileNotFoundError(f"no stored embeddings in {folder}")
        self.identity = _identity_in(meta)
        self.rows = int(meta["rows"])
        self._path = Path(folder) / DATA_FILE
        shape = (self.rows, self.identity.dim)
        self._data = (
            np.memmap(self._path, dtype=DTYPE, mode="r", shape=shape)
            if self.rows
            else np.zeros(shape, dtype=DTYPE)
        )

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) as float32 (zeros where a row has no embedding)."""
        start, stop = max(0, start), min(max(start, stop), self.rows)
        record = self.identity.dim * np.dtype(DTYPE).itemsize
        with open(self._path, "rb") as handle:  # read, not mapped: memory stays flat
            handle.seek(start * record)
            data = handle.read((stop - start) * record)
        block = np.frombuffer(data, dtype=DTYPE).reshape(stop - start, self.identity.dim)
        return block.astype(np.float32)  # a writable copy

    def view(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) as stored (DTYPE), read-only, without copying: for a scan that
        only reads (a copy of every block would cost more than the scan itself)."""
        return self._data[start:stop]

    def chunks(self, size: int = 65_536) -> Iterator[tuple[int, np.ndarray]]:
        """(first row index, float32 block) over all rows, `size` rows at a time."""
        for start in range(0, self.rows, size):
            yield start, self.read(start, min(start + size, self.rows))


def has_embedding(block: np.ndarray) -> np.ndarray:
    """Per row of `block`, whether it holds an embedding (not the all-zero placeholder)."""
    return np.any(block != 0, axis=1)


def replace_rows(folder: str | Path, source: str | Path, rows: list[int]) -> bool:
    """Write `source`'s records (one per entry of `rows`, in order) over `folder`'s records at
    those row indices: a re-run of some rows brings its embeddings home. False (nothing
    written) when either store is missing or they were made by different models."""
    target_meta, source_meta = _identity(Path(folder)), _identity(Path(source))
    if target_meta is None or target_meta != source_meta:
        return False
    block = EmbeddingStore(source).read(0, len(rows)).astype(DTYPE)
    record = block.shape[1] * np.dtype(DTYPE).itemsize
    with open(Path(folder) / DATA_FILE, "r+b") as handle:
        for index, values in zip(rows, block, strict=True):
            handle.seek(index * record)
            handle.write(values.tobytes())
    return True


def take_rows(folder: str | Path, rows: list[int]) -> np.ndarray:
    """The records at `rows` (any order, repeats allowed) as float32, reading only those."""
    store = EmbeddingStore(folder)
    if not rows:
        return np.zeros((0, store.identity.dim), dtype=np.float32)
    return np.asarray(store._data[np.asarray(rows)], dtype=np.float32)


def open_job_store(folder: str | Path, purpose: str) -> EmbeddingStore:
    """The stored embeddings of the job in `folder`; NoEmbeddingsError saying to run the job
    again once (to `purpose`, e.g. "re-label it") when it has none."""
    if read_meta(folder) is None:
        raise NoEmbeddingsError(
            f"Job '{Path(folder).name}' has no stored image embeddings (it ran before they were "
            f"kept); run it again once to {purpose}."
        )
    return EmbeddingStore(folder)


def open_for_model(
    folder: str | Path, model_name: str, vision_digest: str, purpose: str
) -> EmbeddingStore:
    """As open_job_store, and refused when the embeddings were made by a vision tower other
    than the loaded model's (its text or probe side would not be comparable with them)."""
    store = open_job_store(folder, purpose)
    if store.identity.vision_digest != vision_digest:
        raise NoEmbeddingsError(
            f"Job '{Path(folder).name}' was encoded by the model '{store.identity.name}', not by "
            f"the loaded model '{model_name}'; load that model to {purpose}."
        )
    return store
