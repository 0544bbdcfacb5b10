"""Progress of a Spark job for people watching it: every half second, how many tasks of the
running stages are done, from Spark's own status tracker (partitions finish one by one, so this
moves while rows are labelled)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

TaskProgress = Callable[[int, int], None]  # (tasks done, tasks in all) of the running stages


def running_tasks(context: Any) -> tuple[int, int]:
    """Tasks done and in all over the stages running now."""
    tracker = context.statusTracker()
    done = total = 0
    for stage in tracker.getActiveStageIds():
        info = tracker.getStageInfo(stage)
        if info is not None:
            done, total = done + info.numCompletedTasks, total + info.numTasks
    return done, total


@contextmanager
def watch_tasks(context: Any, report: TaskProgress, every: float = 0.5) -> Iterator[None]:
    """Call `report` with the running stages' tasks while the block runs."""
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(every):
            done, total = running_tasks(context)
            if total:
                report(done, total)

    thread = threading.Thread(target=poll, name="spark-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
