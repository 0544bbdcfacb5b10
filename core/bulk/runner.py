"""Runs bulk jobs in background threads of this process, so a web page never waits for one.

The Streamlit page keeps one BackgroundJobs per server process (st.cache_resource). A job's
progress lives in its folder, not here: a browser refresh reads it back; after a server restart
the job shows as interrupted and can be resumed.
"""

from __future__ import annotations

import logging
import threading
import time

from core.bulk.jobs import JobFolder, JobState
from core.bulk.pipeline import BulkJob
from core.config import Settings
from core.engine.classifier import ClipClassifier
from core.errors import UserError
from core.fetch.download import FetchOptions, ImageFetcher

LOG = logging.getLogger("cliplab.jobs")


def server_fetch_options(settings: Settings, classifier: ClipClassifier) -> FetchOptions:
    """Download options for a job a server runs (the web app, the HTTP API): URLs only, never
    local paths, private addresses as the settings say, and JPEGs decoded at reduced scale
    (the model sees `input_size` pixels)."""
    return FetchOptions.from_settings(settings, min_size=classifier.input_size)


class BackgroundJobs:
    """At most one running thread per job folder; each can be asked to stop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[str, tuple[threading.Thread, threading.Event]] = {}

    def is_running(self, folder: JobFolder) -> bool:
        """Whether this process is working on the job now."""
        with self._lock:
            entry = self._running.get(str(folder.path))
            return entry is not None and entry[0].is_alive()

    def start(
        self,
        folder: JobFolder,
        classifier: ClipClassifier,
        options: FetchOptions,
        resume: bool = False,
    ) -> bool:
        """Start (or resume) the job in a thread; False if it is already running."""
        key = str(folder.path)
        with self._lock:
            entry = self._running.get(key)
            if entry is not None and entry[0].is_alive():
                return False
            stop = threading.Event()
            thread = threading.Thread(
                target=_run,
                args=(folder, classifier, options, stop, resume),
                name=f"bulk-{folder.id}",
                daemon=True,
            )
            self._running[key] = (thread, stop)
            if resume:
                state = folder.state() or JobState()
            else:
                folder.reset()
                state = JobState()
            state.status, state.message = "running", "starting"
            folder.write_state(state)
            thread.start()
            return True

    def stop(self, folder: JobFolder) -> None:
        """Ask the job to stop after the rows in progress; it stays resumable."""
        with self._lock:
            entry = self._running.get(str(folder.path))
        if entry is not None:
            entry[1].set()

    def wait(self, folder: JobFolder, timeout: float | None = None) -> None:
        """Block until the job's thread ends (for tests and shutdown)."""
        with self._lock:
            entry = self._running.get(str(folder.path))
        if entry is not None:
            entry[0].join(timeout)

    def shutdown(self, timeout: float = 30.0) -> None:
        """Ask every running job to stop after its rows in progress, and wait up to `timeout`
        seconds in all for them (a server shutting down leaves them stopped, resumable)."""
        with self._lock:
            entries = list(self._running.values())
        for _thread, stop in entries:
            stop.set()
        deadline = time.monotonic() + timeout
        for thread, _stop in entries:
            thread.join(max(0.0, deadline - time.monotonic()))


def _run(
    folder: JobFolder,
    classifier: ClipClassifier,
    options: FetchOptions,
    stop: threading.Event,
    resume: bool,
) -> None:
    fetcher = ImageFetcher(options, pool_size=max(4, folder.spec().workers))
    try:
        BulkJob(folder, classifier, fetcher, stop=stop).run(resume=resume)
    except UserError as exc:
        _fail(folder, str(exc))
    except Exception as exc:
        LOG.exception("Bulk job %s failed", folder.id)
        _fail(folder, f"Unexpected error ({type(exc).__name__}); the details are in the log.")
    finally:
        fetcher.close()


def _fail(folder: JobFolder, message: str) -> None:
    state = folder.state() or JobState()
    state.status, state.message = "failed", message
    folder.write_state(state)
