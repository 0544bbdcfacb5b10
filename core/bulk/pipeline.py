"""Bulk labelling: a CSV of image URLs in, the same CSV with predicted categories out.

The job streams (core/bulk/row_stream.py, which Spark partitions run too): rows are read in
chunks; downloads, decoding and preprocessing run in a bounded thread pool ahead of the model
inside a bounded window of rows; the model encodes full batches of whatever is ready, in any
order; finished rows leave the window strictly in input order and are appended to the job's
results.csv. Memory is bounded by the window, not by the CSV.

Label texts are encoded once per job. A URL seen again (while in flight or among the recently
finished) is fetched and encoded once. Every input row comes out exactly once, in order, with
all its columns; a failed row has an empty category and a human-readable `error`.

Progress is saved with the results, so an interrupted job resumes after its last complete row.
The model always runs on full (padded) batches, which makes each row's scores independent of
its batch-mates: a resumed job's output is identical to an uninterrupted run's. A job with
product text decides each row from its image's scores and its own text as the row is written
(core/bulk/row_labels.py); texts, too, are encoded in fixed-shape batches.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core.bulk.columns import OutputLayout
from core.bulk.csv_input import CsvInfo, CsvInputError, check_text_columns, inspect_csv, iter_rows
from core.bulk.jobs import JobFolder, JobSpec, JobState
from core.bulk.memory import limit_allocator_retention
from core.bulk.results_file import ResultsFile
from core.bulk.row_labels import job_scorers
from core.bulk.row_stream import RowStream
from core.embeddings.store import ModelIdentity
from core.engine.classifier import ClipClassifier
from core.engine.fusion import SetScorer, check_text_model
from core.engine.text_side import label_texts
from core.fetch.download import ImageFetcher

PHASE_LABELLING = "Fetching and labelling images"
_SAVE_EVERY_SECONDS = 1.0


@dataclass(frozen=True)
class Progress:
    """A snapshot for progress displays (st.progress on the page, tqdm on the command line)."""

    done: int
    total: int
    failed: int
    images_per_second: float
    seconds_left: float | None


ProgressCallback = Callable[[Progress], None]


class BulkJob:
    """Runs one job folder to completion, stop or interruption: a RowStream labelling the input's
    rows in order (core/bulk/row_stream.py), a ResultsFile taking them."""

    def __init__(
        self,
        folder: JobFolder,
        classifier: ClipClassifier,
        fetcher: ImageFetcher,
        on_progress: ProgressCallback | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.folder = folder
        self.spec = folder.spec()
        self.classifier = classifier
        self.on_progress = on_progress
        self.stop = stop or threading.Event()
        self.stream = RowStream(self.spec, classifier, fetcher, folder.log_exception, self.stop)

    @property
    def window_size(self) -> int:
        return self.stream.window_size

    @property
    def max_images_alive(self) -> int:
        return self.stream.max_images_alive

    @property
    def max_rows_ahead(self) -> int:
        return self.stream.max_rows_ahead

    @property
    def seconds_waiting(self) -> float:
        return self.stream.seconds_waiting

    def run(self, resume: bool = False) -> JobState:
        """Process the rows not yet done; returns the final state (also saved in the folder)."""
        info = check_input(self.spec)
        check_text_model(self.classifier, self.spec.text_use)
        limit_allocator_retention()
        previous = self.folder.state() if resume else None
        if previous is not None and previous.status == "finished":
            return previous
        state = previous or JobState(rows_total=info.rows)
        state.status, state.message, state.rows_total = "running", "Starting", info.rows
        state.pid = os.getpid()
        layout = OutputLayout(self.spec.label_sets, self.spec.text_use.active)
        header = layout.header(info.columns)
        kept = [c for c in info.columns if c in header]
        model = ModelIdentity(
            self.classifier.name, self.classifier.vision_digest, self.classifier.embedding_dim
        )
        with ResultsFile(self.folder, state, header, kept, layout, model) as results:
            results.save()  # the page shows the job's size and phase at once
            try:
                self._process(results)
                state.status = "stopped" if self.stop.is_set() else "finished"
            except BaseException as exc:
                state.status = "interrupted"
                state.message = f"{type(exc).__name__}: {exc}"
                raise
            finally:
                results.save()
        return state

    def _process(self, results: ResultsFile) -> None:
        state = results.state
        rows = iter_rows(self.spec.input_csv, skip=state.rows_done)
        started, done_this_run, last_save = time.monotonic(), 0, 0.0

        def start_labelling() -> list[SetScorer]:
            scorers = self._scorers(results)
            state.message = PHASE_LABELLING
            results.save()
            return scorers

        for finished in self.stream.steps(rows, start_labelling):
            for values, result in finished:
                results.write(values, result)
            if finished:
                done_this_run += len(finished)
                self._report(state, done_this_run / max(time.monotonic() - started, 1e-9))
            if time.monotonic() - last_save >= _SAVE_EVERY_SECONDS:
                results.save()  # also while waiting: the page's clock moves
                last_save = time.monotonic()

    def _report(self, state: JobState, images_per_second: float) -> None:
        """Update the speed and time left, and tell the progress callback."""
        state.images_per_second = images_per_second
        state.seconds_left = (state.rows_total - state.rows_done) / images_per_second
        if self.on_progress is not None:
            self.on_progress(
                Progress(
                    state.rows_done,
                    state.rows_total,
                    state.rows_failed,
                    state.images_per_second,
                    state.seconds_left,
                )
            )

    def _scorers(self, results: ResultsFile) -> list[SetScorer]:
        """The scoring functions of each label set; says so first when category texts must be
        encoded (the text tower runs only for sets not cached in memory or on disk)."""
        sets = self.spec.label_sets
        to_encode = [
            s
            for s in sets
            if self.classifier.probe is None
            and not self.classifier.has_label_embeddings(
                label_texts(s.labels, s.prompts or None), s.templates
            )
        ]
        if to_encode:
            count = sum(len(s.labels) for s in to_encode)
            results.state.message = (
                f"Encoding {count:,} categories (once; later jobs read them from disk)"
            )
            results.save()
        return job_scorers(self.classifier, sets)


def check_input(spec: JobSpec) -> CsvInfo:
    """The input's description, or a UserError (one sentence) when the job cannot run on it:
    a column that is not in it, product text that cannot be read or used."""
    info = inspect_csv(spec.input_csv)
    if spec.url_column not in info.columns:
        raise CsvInputError(
            f"Column '{spec.url_column}' is not in the input; its columns are: "
            f"{', '.join(info.columns)}."
        )
    check_text_columns(info, spec.url_column, spec.text_columns)
    spec.text_use.checked()
    if spec.input_size and Path(spec.input_csv).stat().st_size != spec.input_size:
        raise CsvInputError(
            f"Input file '{spec.input_csv}' has changed since the job started; start a new job "
            "instead of resuming."
        )
    return info
