"""The heart of a bulk job, shared by the single-machine job and each Spark partition: rows in,
the same rows out in the same order, each with its labels.

A RowWindow of rows reads ahead while a thread pool fetches, decodes and preprocesses their
images; the model encodes full batches of whatever is ready, padded to the batch size so that an
image's scores never depend on its batch-mates (core/bulk/pipeline.py); finished rows leave
strictly in input order and are labelled (core/bulk/row_labels.py). Whoever runs the stream
decides what to do with the rows: a job folder appends them to results.csv, a Spark partition
hands them back to Spark.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from core.bulk.columns import ranked_rows
from core.bulk.jobs import JobSpec
from core.bulk.row_labels import RowLabeller, RowOutput
from core.bulk.row_window import RowWindow, Task
from core.engine.classifier import ClipClassifier
from core.engine.fusion import SetScorer
from core.engine.image_side import Prepared
from core.fetch.download import ImageFetcher

if TYPE_CHECKING:
    import torch

_WORKER_NICENESS = 10

Labelled = list[tuple[dict[str, str], RowOutput]]  # finished rows with their results, in order
ErrorLog = Callable[[str, BaseException], None]


class RowStream:
    """Labels rows in input order with a job's settings (url column, label sets, batch size,
    download workers, top-k, product text)."""

    def __init__(
        self,
        spec: JobSpec,
        classifier: ClipClassifier,
        fetcher: ImageFetcher,
        log_error: ErrorLog | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.spec, self.classifier, self.fetcher = spec, classifier, fetcher
        self.log_error = log_error
        self.stop = stop or threading.Event()
        self.window_size = max(4 * spec.batch_size, 2 * spec.workers)
        self.max_images_alive = 0
        self.max_rows_ahead = 0
        self.seconds_waiting = 0.0  # the model idle, waiting for downloads (starvation + tail)

    def steps(
        self, rows: Iterator[dict[str, str]], make_scorers: Callable[[], list[SetScorer]]
    ) -> Iterator[Labelled]:
        """Yield the rows finished at each step, in input order (an empty list while waiting
        for downloads, so the caller can save its progress) until the input ends or `stop` is
        set. `make_scorers` runs once the first downloads have started."""
        with ThreadPoolExecutor(
            max_workers=self.spec.workers, initializer=_lower_thread_priority
        ) as pool:
            window = RowWindow(rows, self.spec.url_column, self.window_size, pool, self._download)
            window.fill()  # downloads start while labels encode
            scorers = make_scorers()
            labeller = RowLabeller(self.classifier, scorers, self.spec.text_use, self.spec.top_k)
            while not self.stop.is_set():
                window.fill()
                if not len(window):
                    break
                self._encode_ready(window, scorers)
                finished = list(window.pop_finished())
                if not finished:
                    self.seconds_waiting += window.wait_for_downloads()
                outputs = labeller.label(finished)
                yield [(row.values, out) for row, out in zip(finished, outputs, strict=True)]
            self.max_rows_ahead = window.max_rows_ahead
            if self.stop.is_set():
                pool.shutdown(cancel_futures=True)

    def _download(self, url: str) -> tuple[Prepared | None, str | None]:
        """In a worker thread: fetch, decode and preprocess one image. Whatever goes wrong
        here fails this row only: an unexpected exception becomes the row's error (its
        traceback goes to the error log) and the job goes on."""
        try:
            result = self.fetcher.fetch(url)
            if not result.ok:
                return None, result.error
            return self.classifier.prepare(result.image), None
        except Exception as exc:
            if self.log_error is not None:
                self.log_error(f"row with image {url[:300]!r}", exc)
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
