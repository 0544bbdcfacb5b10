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
its batch-mates: a resumed job's output is identical to an uninterrupted run's.
"""

from __future__ import annotations

import csv
import json
import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import torch

from core.bulk.csv_input import CsvInfo, CsvInputError, inspect_csv, iter_rows
from core.bulk.jobs import JobFolder, JobSpec, JobState
from core.bulk.memory import limit_allocator_retention, release_free_memory
from core.engine.classifier import ClipClassifier
from core.engine.image_side import Prepared
from core.engine.text_side import label_texts
from core.fetch.download import ImageFetcher
from core.labels.label_set import LabelSet

OUTPUT_COLUMNS = ("predicted_category", "confidence", "top_categories", "error")
PHASE_LABELLING = "Fetching and labelling images"
_RECENT_URLS = 20_000
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


def set_columns(label_sets: tuple[LabelSet, ...]) -> list[tuple[str, str, str]]:
    """Columns (category, confidence, top list) of every label set after the first, named after
    the set and unique even for similar names. The first set's results are the contract columns
    (predicted_category, confidence, top_categories) and are not repeated."""
    columns, used = [], {"predicted"}  # "predicted_category" is the first set's
    for label_set in label_sets[1:]:
        prefix, n = label_set.column_prefix, 2
        while prefix in used:
            prefix, n = f"{label_set.column_prefix}_{n}", n + 1
        used.add(prefix)
        columns.append((f"{prefix}_category", f"{prefix}_confidence", f"{prefix}_top_categories"))
    return columns


@dataclass(frozen=True)
class SetColumns:
    """Where one label set's results are in the output."""

    name: str
    category: str
    confidence: str
    top: str


def result_columns(label_sets: tuple[LabelSet, ...]) -> list[SetColumns]:
    """Every label set's output columns, the first set's being the contract columns."""
    first = SetColumns(label_sets[0].name, "predicted_category", "confidence", "top_categories")
    further = zip(label_sets[1:], set_columns(label_sets), strict=True)
    return [first] + [SetColumns(s.name, *columns) for s, columns in further]


def output_header(input_columns: list[str], label_sets: tuple[LabelSet, ...]) -> list[str]:
    """Input columns (less any that the output replaces), then the output columns."""
    added = list(OUTPUT_COLUMNS) + [c for triple in set_columns(label_sets) for c in triple]
    return [c for c in input_columns if c not in added] + added


class _Task:
    """One unique URL: its download+preprocess future, then its per-set top-k once encoded."""

    __slots__ = ("url", "future", "prepared", "error", "outputs")

    def __init__(self, url: str, future: Future | None = None) -> None:
        self.url = url
        self.future = future
        self.prepared: Prepared | None = None
        self.error: str | None = None
        self.outputs: list[list[tuple[str, float]]] | None = None

    def collect(self) -> None:
        """Take the finished future's result into the task (once)."""
        if self.future is not None and self.future.done():
            self.prepared, self.error = self.future.result()
            self.future = None

    @property
    def fetching(self) -> bool:
        return self.future is not None and not self.future.done()

    @property
    def finished(self) -> bool:
        self.collect()
        return self.future is None and (self.error is not None or self.outputs is not None)

    @property
    def ready(self) -> bool:
        self.collect()
        return self.future is None and self.prepared is not None and self.outputs is None


@dataclass
class _Row:
    values: dict[str, str]
    task: _Task


def _format_outputs(task: _Task, n_sets: int) -> list[str]:
    """The output cells for one row: the first set's in the contract columns, then the
    `n_sets` further sets' columns."""
    if task.error is not None or task.outputs is None:
        return ["", "", "", task.error or "not processed"] + ["", "", ""] * n_sets
    cells = []
    for ranked in task.outputs:
        top = json.dumps([{"label": label, "score": round(score, 4)} for label, score in ranked])
        cells.append([ranked[0][0], f"{ranked[0][1]:.4f}", top])
    return [*cells[0], ""] + [cell for triple in cells[1 : 1 + n_sets] for cell in triple]


class BulkJob:
    """Runs one job folder to completion, stop or interruption."""

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
        self.n_set_columns = len(set_columns(self.spec.label_sets))
        self.max_images_alive = 0
        self.max_rows_ahead = 0
        self.seconds_waiting = 0.0  # the model idle, waiting for downloads (starvation + tail)
        self._recent: OrderedDict[str, _Task] = OrderedDict()
        self._inflight: dict[str, _Task] = {}

    def run(self, resume: bool = False) -> JobState:
        """Process the rows not yet done; returns the final state (also saved in the folder)."""
        info = check_input(self.spec)
        limit_allocator_retention()
        previous = self.folder.state() if resume else None
        if previous is not None and previous.status == "finished":
            return previous
        state = previous or JobState(rows_total=info.rows)
        state.status, state.message, state.rows_total = "running", "Starting", info.rows
        header = output_header(info.columns, self.spec.label_sets)
        with self._open_results(state, header) as handle:
            writer = csv.writer(handle)
            self._save(state, handle)  # the page shows the job's size and phase at once
            try:
                self._process(state, writer, handle, header, info.columns)
                state.status = "stopped" if self.stop.is_set() else "finished"
            except BaseException as exc:
                state.status = "interrupted"
                state.message = f"{type(exc).__name__}: {exc}"
                raise
            finally:
                self._save(state, handle)
        return state

    def _open_results(self, state: JobState, header: list[str]):  # type: ignore[no-untyped-def]
        path = self.folder.results_path
        if state.rows_done and path.is_file():
            check_results_header(path, header)
        if state.rows_done == 0 or not path.is_file():
            state.rows_done = state.rows_failed = 0
            handle = open(path, "w", encoding="utf-8", newline="")
            csv.writer(handle).writerow(header)
            return handle
        handle = open(path, "r+", encoding="utf-8", newline="")
        handle.truncate(state.results_bytes)
        handle.seek(state.results_bytes)
        return handle

    def _process(self, state, writer, handle, header, input_columns) -> None:  # type: ignore[no-untyped-def]
        kept = [c for c in input_columns if c in header]
        rows = iter_rows(self.spec.input_csv, skip=state.rows_done)
        window: deque[_Row] = deque()
        started, done_this_run, last_save = time.monotonic(), 0, 0.0
        with ThreadPoolExecutor(
            max_workers=self.spec.workers, initializer=_lower_thread_priority
        ) as pool:
            exhausted = self._fill(window, rows, pool)  # downloads start while labels encode
            scorers = self._scorers(state, handle)
            state.message = PHASE_LABELLING
            self._save(state, handle)
            while not self.stop.is_set():
                exhausted = exhausted or self._fill(window, rows, pool)
                if not window:
                    break
                self._encode_ready(window, exhausted, scorers)
                written = self._write_finished(window, writer, kept, state)
                if written:
                    done_this_run += written
                    state.images_per_second = done_this_run / max(time.monotonic() - started, 1e-9)
                    left = state.rows_total - state.rows_done
                    state.seconds_left = left / state.images_per_second
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
                else:
                    self._wait_for_downloads(window)
                if time.monotonic() - last_save >= _SAVE_EVERY_SECONDS:
                    self._save(state, handle)  # also while waiting: the page's clock moves
                    last_save = time.monotonic()
            if self.stop.is_set():
                pool.shutdown(cancel_futures=True)

    def _scorers(self, state: JobState, handle) -> list:  # type: ignore[no-untyped-def]
        """One scoring function per label set; says so first when category texts must be
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
            state.message = f"Encoding {count:,} categories (once; later jobs read them from disk)"
            self._save(state, handle)
        return [self.classifier.scorer(s.labels, s.templates, s.prompts or None) for s in sets]

    def _write_finished(self, window: deque[_Row], writer, kept: list[str], state: JobState) -> int:  # type: ignore[no-untyped-def]
        """Write the finished rows at the head of the window, in input order; how many."""
        written = 0
        while window and window[0].task.finished:
            row = window.popleft()
            self._retire(row)
            outputs = _format_outputs(row.task, self.n_set_columns)
            writer.writerow([row.values.get(c, "") for c in kept] + outputs)
            state.rows_failed += row.task.error is not None
            written += 1
        state.rows_done += written
        return written

    def _fill(self, window: deque[_Row], rows: Iterator[dict[str, str]], pool) -> bool:  # type: ignore[no-untyped-def]
        """Top the window up with new rows; True once the input is exhausted."""
        while len(window) < self.window_size:
            values = next(rows, None)
            if values is None:
                return True
            window.append(_Row(values, self._task_for(values.get(self.spec.url_column, ""), pool)))
            self.max_rows_ahead = max(self.max_rows_ahead, len(window))
        return False

    def _task_for(self, raw_url: str, pool: ThreadPoolExecutor) -> _Task:
        url = (raw_url or "").strip()
        if not url:
            task = _Task(url)
            task.error = "no image URL in this row"
            return task
        known = self._inflight.get(url) or self._recent.get(url)
        if known is not None:
            if url in self._recent:
                self._recent.move_to_end(url)
            return known
        task = _Task(url, pool.submit(self._download, url))
        self._inflight[url] = task
        return task

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

    def _retire(self, row: _Row) -> None:
        """A written row's URL moves from in-flight to the bounded recent-results memory."""
        task = row.task
        if self._inflight.get(task.url) is task:
            del self._inflight[task.url]
            self._recent[task.url] = task
            if len(self._recent) > _RECENT_URLS:
                self._recent.popitem(last=False)

    def _encode_ready(self, window: deque[_Row], exhausted: bool, scorers) -> None:  # type: ignore[no-untyped-def]
        """Encode a full batch of ready images, or a partial one when no more can arrive."""
        batch_size = self.spec.batch_size
        while True:
            ready, seen = [], set()
            for row in window:
                if row.task.ready and id(row.task) not in seen:
                    seen.add(id(row.task))
                    ready.append(row.task)
            fetching = {id(row.task) for row in window if row.task.fetching}
            self.max_images_alive = max(self.max_images_alive, len(ready) + len(fetching))
            still_fetching = bool(fetching)
            window_full = len(window) >= self.window_size
            can_grow = still_fetching or not (exhausted or window_full)
            if not ready or (len(ready) < batch_size and can_grow):
                return
            batch = ready[:batch_size]
            embeddings = self.classifier.encode_pixels(
                self.classifier.pixels([task.prepared for task in batch]), pad_to=batch_size
            )
            per_set = [score(embeddings) for score in scorers]
            sets = self.spec.label_sets
            for i, task in enumerate(batch):
                task.outputs = [
                    self._top(probs[i], s) for probs, s in zip(per_set, sets, strict=True)
                ]
                task.prepared = None

    def _top(self, probs: torch.Tensor, label_set: LabelSet) -> list[tuple[str, float]]:
        k = min(self.spec.top_k, len(label_set.labels))
        scores, indices = probs.topk(k)
        pairs = zip(scores.tolist(), indices.tolist(), strict=True)
        return [(label_set.labels[i], float(score)) for score, i in pairs]

    def _wait_for_downloads(self, window: deque[_Row]) -> None:
        pending = [row.task.future for row in window if row.task.fetching]
        if pending:
            started = time.perf_counter()
            wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            self.seconds_waiting += time.perf_counter() - started

    def _save(self, state: JobState, handle) -> None:  # type: ignore[no-untyped-def]
        handle.flush()
        state.results_bytes = handle.tell()
        self.folder.write_state(state)
        release_free_memory()


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


def check_results_header(path: Path, header: list[str]) -> None:
    """Refuse to add rows to results whose columns are not the ones this version writes (a
    job made by an earlier version, whose extra label sets had other columns)."""
    with open(path, encoding="utf-8", newline="") as handle:
        existing = next(csv.reader(handle), [])
    if existing != header:
        raise CsvInputError(
            "This job's results have other columns than this version of the app writes (the "
            "job was made by an earlier version); start it again instead of resuming."
        )


def check_input(spec: JobSpec) -> CsvInfo:
    """The input's description, or CsvInputError when the job cannot run on it."""
    info = inspect_csv(spec.input_csv)
    if spec.url_column not in info.columns:
        raise CsvInputError(
            f"Column '{spec.url_column}' is not in the input; its columns are: "
            f"{', '.join(info.columns)}."
        )
    if spec.input_size and Path(spec.input_csv).stat().st_size != spec.input_size:
        raise CsvInputError(
            f"Input file '{spec.input_csv}' has changed since the job started; start a new job "
            "instead of resuming."
        )
    return info
