"""Bulk labelling: a CSV of image URLs in, the same CSV with predicted categories out.

The job streams: rows are read in chunks; downloads, decoding and preprocessing run in a bounded
thread pool ahead of the model inside a bounded window of rows; the model encodes full batches
of whatever is ready, in any order; finished rows leave the window strictly in input order and
are appended to the job's results.csv. Memory is bounded by the window, not by the CSV.

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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from core.bulk.columns import OutputLayout, ranked_rows
from core.bulk.csv_input import CsvInfo, CsvInputError, check_text_columns, inspect_csv, iter_rows
from core.bulk.jobs import JobFolder, JobSpec, JobState
from core.bulk.memory import limit_allocator_retention
from core.bulk.results_file import ResultsFile
from core.bulk.row_labels import RowLabeller, job_scorers
from core.bulk.row_window import RowWindow, Task
from core.embeddings.store import ModelIdentity
from core.engine.classifier import ClipClassifier
from core.engine.fusion import SetScorer, check_text_model
from core.engine.image_side import Prepared
from core.engine.text_side import label_texts
from core.fetch.download import ImageFetcher

if TYPE_CHECKING:
    import torch

PHASE_LABELLING = "Fetching and labelling images"
_SAVE_EVERY_SECONDS = 1.0
_WORKER_NICENESS = 10


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
    """Runs one job folder to completion, stop or interruption: a RowWindow of rows read ahead,
    the model encoding full batches of ready images, a ResultsFile taking finished rows in
    order."""

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
        self.fetcher = fetcher
        self.on_progress = on_progress
        self.stop = stop or threading.Event()
        self.window_size = max(4 * self.spec.batch_size, 2 * self.spec.workers)
        self.max_images_alive = 0
        self.max_rows_ahead = 0
        self.seconds_waiting = 0.0  # the model idle, waiting for downloads (starvation + tail)

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
        with ThreadPoolExecutor(
            max_workers=self.spec.workers, initializer=_lower_thread_priority
        ) as pool:
            window = RowWindow(rows, self.spec.url_column, self.window_size, pool, self._download)
            window.fill()  # downloads start while labels encode
            scorers = self._scorers(results)
            labeller = RowLabeller(self.classifier, scorers, self.spec.text_use, self.spec.top_k)
            state.message = PHASE_LABELLING
            results.save()
            while not self.stop.is_set():
                window.fill()
                if not len(window):
                    break
                self._encode_ready(window, scorers)
                finished = list(window.pop_finished())
                for row, result in zip(finished, labeller.label(finished), strict=True):
                    results.write(row.values, result)
                if written := len(finished):
                    done_this_run += written
                    self._report(state, done_this_run / max(time.monotonic() - started, 1e-9))
                else:
                    self.seconds_waiting += window.wait_for_downloads()
                if time.monotonic() - last_save >= _SAVE_EVERY_SECONDS:
                    results.save()  # also while waiting: the page's clock moves
                    last_save = time.monotonic()
            self.max_rows_ahead = window.max_rows_ahead
            if self.stop.is_set():
                pool.shutdown(cancel_futures=True)

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

    def _download(self, url: str) -> tuple[Prepared | None, str | None]:
        """In a worker thread: fetch, decode and preprocess one image. Whatever goes wrong
        here fails this row only: an unexpected exception becomes the row's error and its
        traceback goes to the job's log, and the job goes on."""
        try:
            result = self.fetcher.fetch(url)
            if not result.ok:
                return None, result.error
            return self.classifier.prepare(result.image), None
        except Exception as exc:
            self.folder.log_exception(f"row with image {url[:300]!r}", exc)
            return None, f"internal error: {type(exc).__name__}"

    def _encode_ready(self, window: RowWindow, scorers: list[SetScorer]) -> None:
        """Encode full batches of ready images, or a partial one when no more can arrive."""
        batch_size = self.spec.batch_size
        while True:
            ready, fetching = window.tasks()
            self.max_images_alive = max(self.max_images_alive, len(ready) + fetching)
            can_grow = fetching > 0 or not (window.exhausted or window.full)
            if not ready or (len(ready) < batch_size and can_grow):
                return
            batch = ready[:batch_size]
            embeddings = self.classifier.encode_pixels(
                self.classifier.pixels([task.prepared for task in batch]), pad_to=batch_size
            )
            self._keep_scores(batch, embeddings, scorers)

    def _keep_scores(
        self, batch: list[Task], embeddings: torch.Tensor, scorers: list[SetScorer]
    ) -> None:
        """Each encoded image's embedding and, per label set, its top-k (a job with product
        text: its probabilities, each row that shares the image being decided with its own
        text when written)."""
        probs = [scorer.image(embeddings) for scorer in scorers]
        with_text = self.spec.text_use.active
        ranked = [
            ranked_rows(p, scorer.labels, self.spec.top_k)
            for p, scorer in zip(probs, scorers, strict=True)
            if not with_text
        ]
        for i, task in enumerate(batch):
            if with_text:
                task.probs = [p[i] for p in probs]
            else:
                task.outputs = [per_set[i] for per_set in ranked]
            task.prepared = None
            task.embedding = embeddings[i].numpy()


def _lower_thread_priority() -> None:
    """Run download/decode threads only on CPU time the model leaves over (Linux: per thread).

    torch runs each operation on a team of threads, one per core; a worker that pre-empts one
    of them mid-operation stalls the whole team, so on a busy 2-core machine any worker time
    costs the model about twice over. SCHED_IDLE threads run only when a core would otherwise
    idle (between operations, while the model waits for images), and the window of rows ahead
    absorbs the difference: measured, (a)/(c) rose from 0.78-0.84 at nice 10 to 0.90-0.94.
    Where SCHED_IDLE is not available, a lower nice value is the fallback.
    """
    thread = threading.get_native_id()
    try:
        os.sched_setscheduler(thread, os.SCHED_IDLE, os.sched_param(0))
        return
    except (AttributeError, OSError):
        pass
    try:
        os.setpriority(os.PRIO_PROCESS, thread, _WORKER_NICENESS)
    except (AttributeError, OSError):
        pass


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
