"""A job's stored embeddings written in clip-retrieval's layout, so autofaiss or clip-retrieval
can index them (`autofaiss build_index --embeddings DIR/img_emb`, clip-retrieval's back end):

    DIR/img_emb/img_emb_0.npy            float16, one row per row that has an embedding, in
                                         row order
    DIR/metadata/metadata_0.parquet      one row per exported embedding, same order: the row's
                                         columns from the job's results (as text, as in the
                                         CSV) plus `row_index` (the row's 0-based index)

Streamed CHUNK_ROWS rows at a time: the array is written through a memory map
(numpy.lib.format.open_memmap) and the Parquet file one row group per chunk, so a job of
millions of rows is never held in memory. Each file appears whole or not at all.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np

from core.embeddings.store import EmbeddingStore, has_embedding, open_job_store
from core.errors import UserError

CHUNK_ROWS = 65_536
EMBEDDINGS_FILE = Path("img_emb") / "img_emb_0.npy"
METADATA_FILE = Path("metadata") / "metadata_0.parquet"
ROW_INDEX = "row_index"


class ExportError(UserError, ValueError):
    """The embeddings cannot be exported; the message says why."""


@dataclass(frozen=True)
class ExportOutcome:
    """What was written: embeddings exported, rows looked at, the width and the model."""

    exported: int
    rows: int
    dim: int
    model: str


def export_embeddings(
    folder: str | Path, results_csv: str | Path, output: str | Path, rows: int
) -> ExportOutcome:
    """Write the first `rows` rows' embeddings of the store in `folder`, with their columns
    from `results_csv` (row i of the file is row i of the store), into `output`."""
    store = open_job_store(folder, "export its embeddings")
    if not Path(results_csv).is_file():
        raise ExportError(f"Job '{Path(folder).name}' has no results yet; run it first.")
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise ExportError(f"'{output}' is a file; give a folder to export into.")
    rows = min(rows, store.rows)
    count = sum(int(has_embedding(block).sum()) for _s, block in _chunks(store, rows))
    targets = (output / EMBEDDINGS_FILE, output / METADATA_FILE)
    parts = [_part(path) for path in targets]
    try:
        _write_embeddings(store, rows, count, parts[0])
        with open(results_csv, encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle)
            _write_metadata(store, rows, next(reader, []), reader, parts[1])
        for part, path in zip(parts, targets, strict=True):
            os.replace(part, path)
    finally:
        for part in parts:
            part.unlink(missing_ok=True)
    return ExportOutcome(count, rows, store.identity.dim, store.identity.name)


def _chunks(store: EmbeddingStore, rows: int) -> Iterator[tuple[int, np.ndarray]]:
    for start in range(0, rows, CHUNK_ROWS):
        yield start, store.read(start, min(start + CHUNK_ROWS, rows))


def _part(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.name}.part")


def _write_embeddings(store: EmbeddingStore, rows: int, count: int, path: Path) -> None:
    """The rows that have an embedding, as float16, through a memory map."""
    if count == 0:  # an empty file cannot be mapped
        with open(path, "wb") as handle:
            np.save(handle, np.zeros((0, store.identity.dim), dtype=np.float16))
        return
    array = np.lib.format.open_memmap(
        path, mode="w+", dtype=np.float16, shape=(count, store.identity.dim)
    )
    written = 0
    for _start, block in _chunks(store, rows):
        kept = block[has_embedding(block)]
        array[written : written + len(kept)] = kept
        written += len(kept)
    array.flush()
    del array


def _write_metadata(
    store: EmbeddingStore, rows: int, header: list[str], lines: Iterator[list[str]], path: Path
) -> None:
    """One Parquet row group per chunk: the chunk's rows that have an embedding."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = [f"input_{name}" if name == ROW_INDEX else name for name in header]
    fields = [pa.field(name, pa.string()) for name in names]
    schema = pa.schema([*fields, pa.field(ROW_INDEX, pa.int64())])
    with pq.ParquetWriter(path, schema) as writer:
        for start, block in _chunks(store, rows):
            present = np.flatnonzero(has_embedding(block))
            chunk = list(islice(lines, len(block)))
            if len(chunk) < len(block):
                raise ExportError(
                    f"The job's results have fewer rows ({start + len(chunk):,}) than its "
                    f"embeddings ({rows:,}); run the job again to export it."
                )
            picked = [chunk[i] for i in present]
            columns = {
                name: [line[j] if j < len(line) else "" for line in picked]
                for j, name in enumerate(names)
            }
            columns[ROW_INDEX] = (present + start).tolist()
            writer.write_table(pa.table(columns, schema=schema))
