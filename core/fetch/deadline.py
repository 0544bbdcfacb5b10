"""Deadlines that hold against slow servers: one clock for a whole fetch, enforced on sockets.

Socket timeouts bound each read, not the sum of reads: a server that sends one header line every
few seconds never trips a read timeout and can hold a fetch for minutes. A Deadline covers one
fetch from connecting to the last byte. Connections register their sockets with the Deadline of
the thread they run in (`current_deadline()`); when it passes, a Watchdog thread shuts those
sockets down, so whatever read is blocked on them returns at once and the fetch ends with
"timed out". Shutting a socket down is the one thread-safe way to interrupt a blocking read.
"""

from __future__ import annotations

import heapq
import itertools
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

_local = threading.local()


class Deadline:
    """A point in time after which the sockets registered with it are shut down."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self.expired = False
        self.closed = False  # the fetch is over: a late watchdog call must not touch sockets
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def remaining(self) -> float:
        """Seconds left, never below zero."""
        return max(0.0, self.at - time.monotonic())

    @property
    def passed(self) -> bool:
        """True once the deadline has been reached (whether or not the watchdog has fired)."""
        return self.expired or time.monotonic() >= self.at

    def watch(self, sock: socket.socket | None) -> None:
        """Shut `sock` down when the deadline passes (at once if it already has)."""
        if sock is None:
            return
        with self._lock:
            if self.closed:
                return
            if not self.expired:
                self._sockets.append(sock)
                return
        _shut_down(sock)

    def expire(self) -> None:
        """Mark the deadline as passed and interrupt every socket registered with it (nothing
        once the fetch is over: its connections may be serving another fetch by then)."""
        with self._lock:
            if self.closed:
                return
            self.expired = True
            sockets, self._sockets = self._sockets, []
            for sock in sockets:
                _shut_down(sock)

    def close(self) -> None:
        """The fetch is over: forget its sockets (they may serve another fetch next)."""
        with self._lock:
            self.closed = True
            self._sockets = []


def _shut_down(sock: socket.socket) -> None:
    """Shut the connection down at the file descriptor (a TLS socket's too, without touching its
    TLS state from this thread); a socket already closed is left alone."""
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except (OSError, ValueError):
        pass


def current_deadline() -> Deadline | None:
    """The Deadline of the fetch running in this thread, if any."""
    return getattr(_local, "deadline", None)


class Watchdog:
    """One lazily started daemon thread that calls each armed callback when its time comes,
    unless it was disarmed first."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int]] = []
        self._callbacks: dict[int, Callable[[], None]] = {}
        self._tokens = itertools.count()
        self._thread: threading.Thread | None = None
        self._closed = False

    def arm(self, at: float, callback: Callable[[], None]) -> int:
        """Call `callback` at monotonic time `at`; returns a token for disarm()."""
        with self._cond:
            token = next(self._tokens)
            self._callbacks[token] = callback
            heapq.heappush(self._heap, (at, token))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="deadlines", daemon=True)
                self._thread.start()
            self._cond.notify()
        return token

    def disarm(self, token: int) -> None:
        """Forget an armed callback (no effect if it already ran)."""
        with self._cond:
            self._callbacks.pop(token, None)

    def close(self) -> None:
        """Stop the thread; armed callbacks are dropped."""
        with self._cond:
            self._closed = True
            self._callbacks.clear()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                callback = self._next_due()
                if callback is None:
                    return
            try:
                callback()
            except Exception:  # one odd socket must not stop every later deadline
                continue

    def _next_due(self) -> Callable[[], None] | None:
        """Wait (holding the condition) for the next callback that is due; None when closed."""
        while not self._closed:
            if not self._heap:
                self._cond.wait()
                continue
            at, token = self._heap[0]
            if token not in self._callbacks:
                heapq.heappop(self._heap)
                continue
            delay = at - time.monotonic()
            if delay > 0:
                self._cond.wait(delay)
                continue
            heapq.heappop(self._heap)
            return self._callbacks.pop(token)
        return None


@contextmanager
def deadline_scope(watchdog: Watchdog, seconds: float) -> Iterator[Deadline]:
    """Run the body under a new Deadline, current in this thread, enforced by `watchdog`."""
    deadline = Deadline(seconds)
    token = watchdog.arm(deadline.at, deadline.expire)
    previous = current_deadline()
    _local.deadline = deadline
    try:
        yield deadline
    finally:
        _local.deadline = previous
        watchdog.disarm(token)
        deadline.close()
