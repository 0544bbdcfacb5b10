"""Re-labelling a job from its stored image embeddings: no image is fetched or encoded, and the
output has exactly the columns `classify` gives for the new label sets (the job's input
columns, then the new sets' columns; failed rows keep their error)."""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import torch

from core.bulk.columns import output_cells, output_header, ranked_rows, set_columns
from core.bulk.jobs import JobFolder
from core.embeddings.store import EmbeddingStore, has_embedding, open_for_model
from core.engine.classifier import ClipClassifier
from core.errors import UserError
from core.labels.label_set import LabelSet
from core.storage import atomic_write_json

CHUNK_ROWS = 8192


class RelabelError(UserError, ValueError):
    """The job cannot be re-labelled from its embeddings; the message says why and what to do."""


@dataclass(frozen=True)
class RelabelOutcome:
    """What a re-label wrote: rows in all, and rows whose image had failed (kept as failed)."""

    rows: int
    failed: int


def stored_embeddings(
    folder: JobFolder, classifier: ClipClassifier, purpose: str = "re-label it"
) -> EmbeddingStore:
    """The job's embeddings, when they exist and were made by the loaded model."""
    return open_for_model(folder.path, classifier.name, classifier.vision_digest, purpose)


def relabel(
    folder: JobFolder,
    classifier: ClipClassifier,
    label_sets: tuple[LabelSet, ...],
    output: str | Path,
    top_k: int | None = None,
) -> RelabelOutcome:
    """Write `folder`'s rows labelled with `label_sets` to `output` (atomically: a refused or
    failed re-label leaves no partial file), `top_k` labels per set (default: the job's)."""
    store = stored_embeddings(folder, classifier)
    spec, state = folder.spec(), folder.state()
    rows_done = state.rows_done if state is not None else 0
    if rows_done > store.rows:
        raise RelabelError(
            f"Job '{folder.id}' has {rows_done:,} labelled rows but embeddings for only "
            f"{store.rows:,}; run it again to re-label it."
        )
    scorers = [classifier.scorer(s.labels, s.templates, s.prompts or None) for s in label_sets]
    with open(folder.results_path, encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        job_columns = set(output_header([], spec.label_sets))
        kept = [i for i, name in enumerate(header) if name not in job_columns]
        new_header = output_header([header[i] for i in kept], label_sets)
        lines = _labelled_lines(
            islice(reader, rows_done), header.index("error"), kept, store, scorers, label_sets,
            top_k or spec.top_k,
        )
        failed = _write_atomically(Path(output), new_header, lines)
    return RelabelOutcome(rows_done, failed)


def _labelled_lines(
    rows: Iterator[list[str]],
    error_column: int,
    kept: list[int],
    store: EmbeddingStore,
    scorers: list,
    label_sets: tuple[LabelSet, ...],
    top_k: int,
) -> Iterator[tuple[list[str], bool]]:
    """Each output line with whether its row failed, CHUNK_ROWS rows at a time."""
    n_sets, start = len(set_columns(label_sets)), 0
    while chunk := list(islice(rows, CHUNK_ROWS)):
        block = store.read(start, start + len(chunk))
        present = has_embedding(block)
        embeddings = torch.from_numpy(block)
        ranked = [
            ranked_rows(score(embeddings), s.labels, top_k)
            for score, s in zip(scorers, label_sets, strict=True)
        ]
        for j, row in enumerate(chunk):
            error = row[error_column]
            if not error and not present[j]:
                raise RelabelError(
                    f"Row {start + j + 1:,} of the job has a label but no stored embedding; run "
                    "the job again to re-label it."
                )
            outputs = None if error else [per_set[j] for per_set in ranked]
            yield [row[i] for i in kept] + output_cells(outputs, error or None, n_sets), bool(error)
        start += len(chunk)


def _write_atomically(
    path: Path, header: list[str], lines: Iterator[tuple[list[str], bool]]
) -> int:
    """Write the CSV to a temporary file beside `path`, then move it into place; the number of
    failed rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    failed = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            for line, is_failed in lines:
                writer.writerow(line)
                failed += is_failed
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return failed


VERSIONS_FOLDER = "versions"


def new_version(folder: JobFolder, label_sets: tuple[LabelSet, ...]) -> Path:
    """A new numbered version folder of the job (versions/002/, 003/...; the job's own results
    are version 1) with its label sets recorded; returns where its results.csv goes."""
    root = folder.path / VERSIONS_FOLDER
    root.mkdir(exist_ok=True)
    taken = [int(p.name) for p in root.iterdir() if p.name.isdigit()]
    version = root / f"{max(taken, default=1) + 1:03d}"
    version.mkdir()
    atomic_write_json(version / "label_sets.json", [s.to_dict() for s in label_sets])
    return version / "results.csv"
