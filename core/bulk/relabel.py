"""Re-labelling a job from its stored image embeddings: no image is fetched or encoded, and the
output has exactly the columns `classify` gives for the new label sets (the job's input
columns, then the new sets' columns; failed rows keep their error). A job with product text is
re-labelled with the same use of it (mode, weight), from each row's text."""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import torch

from core.bulk.columns import OutputLayout, Ranked, Sides, ranked_rows
from core.bulk.jobs import JobFolder
from core.bulk.row_labels import RowLabeller, job_scorers
from core.embeddings.store import EmbeddingStore, has_embedding, open_for_model
from core.engine.classifier import ClipClassifier
from core.engine.fusion import check_text_model
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
    failed re-label leaves no partial file), `top_k` labels per set (default: the job's). A job
    with product text is decided again from each row's stored image embedding and its text
    (read from the job's results, which keep the input's columns), as `classify` decides it."""
    store = stored_embeddings(folder, classifier)
    spec, state = folder.spec(), folder.state()
    rows_done = state.rows_done if state is not None else 0
    if rows_done > store.rows:
        raise RelabelError(
            f"Job '{folder.id}' has {rows_done:,} labelled rows but embeddings for only "
            f"{store.rows:,}; run it again to re-label it."
        )
    check_text_model(classifier, spec.text_use)
    scorers = job_scorers(classifier, label_sets)
    labeller = RowLabeller(classifier, scorers, spec.text_use, top_k or spec.top_k)
    layout = OutputLayout(label_sets, spec.text_use.active)
    with open(folder.results_path, encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        job_columns = set(OutputLayout(spec.label_sets, spec.text_use.active).added())
        kept = [i for i, name in enumerate(header) if name not in job_columns]
        new_header = layout.header([header[i] for i in kept])
        columns = _Columns(header.index("error"), kept, _text_columns(folder, header))
        lines = _labelled_lines(islice(reader, rows_done), columns, store, labeller, layout)
        failed = _write_atomically(Path(output), new_header, lines)
    return RelabelOutcome(rows_done, failed)


@dataclass(frozen=True)
class _Columns:
    """Where a job's results hold what a re-label reads: the error, the input's columns (kept
    in the output), and the product text columns by name."""

    error: int
    kept: list[int]
    text: dict[str, int]


def _text_columns(folder: JobFolder, header: list[str]) -> dict[str, int]:
    """The position of each of the job's product text columns in its results."""
    columns = folder.spec().text_columns
    missing = [c for c in columns if c not in header]
    if missing:
        raise RelabelError(
            f"Job '{folder.id}' has no column '{missing[0]}' (its product text) in its results; "
            "run the job again to re-label it."
        )
    return {column: header.index(column) for column in columns}


def _labelled_lines(
    rows: Iterator[list[str]],
    columns: _Columns,
    store: EmbeddingStore,
    labeller: RowLabeller,
    layout: OutputLayout,
) -> Iterator[tuple[list[str], bool]]:
    """Each output line with whether its row failed (has no category), CHUNK_ROWS rows at a
    time."""
    start = 0
    while chunk := list(islice(rows, CHUNK_ROWS)):
        block = store.read(start, start + len(chunk))
        present = has_embedding(block)
        for j, row in enumerate(chunk):
            if not row[columns.error] and not present[j]:
                raise RelabelError(
                    f"Row {start + j + 1:,} of the job has a label but no stored embedding; run "
                    "the job again to re-label it."
                )
        errors = [row[columns.error] or None for row in chunk]
        decided = _decided(chunk, errors, torch.from_numpy(block), labeller, columns.text)
        for row, error, (outputs, sides) in zip(chunk, errors, decided, strict=True):
            labelled = bool(outputs) and outputs[0] is not None
            cells = layout.cells(outputs, error, sides)
            yield [row[i] for i in columns.kept] + cells, not labelled
        start += len(chunk)


def _decided(
    chunk: list[list[str]],
    errors: list[str | None],
    embeddings: torch.Tensor,
    labeller: RowLabeller,
    text_columns: dict[str, int],
) -> list[tuple[list[Ranked | None] | None, Sides | None]]:
    """Each row's top-k per label set (None: its image failed and nothing else labels it) and,
    with product text, the first set's image and text views."""
    probs = [scorer.image(embeddings) for scorer in labeller.scorers]
    if not labeller.use.active:
        ranked = [
            ranked_rows(p, scorer.labels, labeller.top_k)
            for p, scorer in zip(probs, labeller.scorers, strict=True)
        ]
        return [
            (None if error else [per_set[j] for per_set in ranked], None)
            for j, error in enumerate(errors)
        ]
    texts = labeller.text_embeddings(
        [{name: row[i] for name, i in text_columns.items()} for row in chunk]
    )
    return [
        labeller.decide(
            None if error else [p[j] for p in probs], None if error else embeddings[j], texts[j]
        )
        for j, error in enumerate(errors)
    ]


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
