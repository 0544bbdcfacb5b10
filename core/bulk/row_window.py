"""The rows of a bulk job between reading and writing: a bounded window in input order, each row
holding the task of its URL (download and preprocessing in a thread pool, then its scores).

A URL seen again, while in flight or among the recently finished, shares its task: it is
fetched and encoded once. Rows leave the window only from its head, so they are written in
input order whatever order their images arrive in.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from core.bulk.columns import Ranked
from core.engine.image_side import Prepared

if TYPE_CHECKING:
    import torch

_RECENT_URLS = 20_000

Download = Callable[[str], tuple[Prepared | None, str | None]]


class Task:
    """One unique URL: its download+preprocess future, then, once encoded, its per-set top-k
    (a job without product text) or its per-set probabilities (a job with text: each row that
    shares the URL is decided with its own text, core/bulk/row_labels.py)."""

    __slots__ = ("url", "future", "prepared", "error", "outputs", "probs", "embedding")

    def __init__(self, url: str, future: Future | None = None) -> None:
        self.url = url
        self.future = future
        self.prepared: Prepared | None = None
        self.error: str | None = None
        self.outputs: list[Ranked] | None = None
        self.probs: list[torch.Tensor] | None = None  # one row of probabilities per label set
        self.embedding: np.ndarray | None = None  # the image's embedding, once encoded

    def collect(self) -> None:
        """Take the finished future's result into the task (once)."""
        if self.future is not None and self.future.done():
            self.prepared, self.error = self.future.result()
            self.future = None

    @property
    def fetching(self) -> bool:
        return self.future is not None and not self.future.done()

    @property
    def encoded(self) -> bool:
        return self.outputs is not None or self.probs is not None

    @property
    def finished(self) -> bool:
        self.collect()
        return self.future is None and (self.error is not None or self.encoded)

    @property
    def ready(self) -> bool:
        self.collect()
        return self.future is None and self.prepared is not None and not self.encoded


@dataclass
class Row:
    """One input row (its cells) and the task of its URL."""

    values: dict[str, str]
    task: Task


class RowWindow:
    """At most `size` rows read ahead of the writer, their downloads running in `pool`."""

    def __init__(
        self,
        rows: Iterator[dict[str, str]],
        url_column: str,
        size: int,
        pool: ThreadPoolExecutor,
        download: Download,
    ) -> None:
        self._input, self.url_column, self.size = rows, url_column, size
        self._pool, self._download = pool, download
        self._rows: deque[Row] = deque()
        self._recent: OrderedDict[str, Task] = OrderedDict()
        self._inflight: dict[str, Task] = {}
        self.exhausted = False
        self.max_rows_ahead = 0

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def full(self) -> bool:
        return len(self._rows) >= self.size

    def fill(self) -> bool:
        """Top the window up with new rows; True once the input is exhausted."""
        while not self.exhausted and len(self._rows) < self.size:
            values = next(self._input, None)
            if values is None:
                self.exhausted = True
                break
            task = self._task_for(values.get(self.url_column, ""))
            self._rows.append(Row(values, task))
            self.max_rows_ahead = max(self.max_rows_ahead, len(self._rows))
        return self.exhausted

    def tasks(self) -> tuple[list[Task], int]:
        """The unique tasks ready to encode, in window order, and how many are still fetching."""
        ready, seen = [], set()
        for row in self._rows:
            if row.task.ready and id(row.task) not in seen:
                seen.add(id(row.task))
                ready.append(row.task)
        fetching = {id(row.task) for row in self._rows if row.task.fetching}
        return ready, len(fetching)

    def pop_finished(self) -> Iterator[Row]:
        """The finished rows at the head of the window, in input order, leaving it."""
        while self._rows and self._rows[0].task.finished:
            row = self._rows.popleft()
            self._retire(row.task)
            yield row

    def wait_for_downloads(self, timeout: float = 0.5) -> float:
        """Wait until a download finishes (at most `timeout`); the seconds waited."""
        pending = [row.task.future for row in self._rows if row.task.fetching]
        if not pending:
            return 0.0
        started = time.perf_counter()
        wait(pending, timeout=timeout, return_when=FIRST_COMPLETED)
        return time.perf_counter() - started

    def _task_for(self, raw_url: str) -> Task:
        url = (raw_url or "").strip()
        if not url:
            task = Task(url)
            task.error = "no image URL in this row"
            return task
        known = self._inflight.get(url) or self._recent.get(url)
        if known is not None:
            if url in self._recent:
                self._recent.move_to_end(url)
            return known
        task = Task(url, self._pool.submit(self._download, url))
        self._inflight[url] = task
        return task

    def _retire(self, task: Task) -> None:
        """A written row's URL moves from in-flight to the bounded recent-results memory."""
        if self._inflight.get(task.url) is task:
            del self._inflight[task.url]
            self._recent[task.url] = task
            if len(self._recent) > _RECENT_URLS:
                self._recent.popitem(last=False)
