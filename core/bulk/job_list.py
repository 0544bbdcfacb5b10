"""The bulk jobs as a listing shows them (`python -m core jobs`, GET /v1/jobs): each job folder's
status, rows, model, when created, and whether it has stored image embeddings. Reads only the
folders' small JSON files, so it never imports torch and answers at once; a damaged file never
stops the listing.

A running job saves its state at least every second or so (core/bulk/pipeline.py); one whose
process has gone (a crash, a killed shell, a server restart) is shown as interrupted, as the
Bulk CSV page shows a job no thread is running (core/bulk/jobs.py shown_status).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

from core.bulk.jobs import SPEC_FILE, JobFolder, JobState, shown_status

NOT_STARTED, UNREADABLE = "not started", "unreadable"


@dataclass(frozen=True)
class JobLine:
    """One job as listed; counts are None when the job has not started or its state is
    unreadable, the model None when its settings are unreadable."""

    id: str
    status: str
    rows_done: int | None
    rows_total: int | None
    rows_failed: int | None
    model: str | None
    created: datetime
    embeddings: bool

    def to_json(self) -> dict[str, object]:
        """The JSON object of `jobs --json` (created as local ISO 8601 with its UTC offset)."""
        return {
            "id": self.id,
            "status": self.status,
            "rows_done": self.rows_done,
            "rows_total": self.rows_total,
            "rows_failed": self.rows_failed,
            "model": self.model,
            "created": self.created.isoformat(timespec="seconds"),
            "embeddings": self.embeddings,
        }

    def cells(self) -> tuple[str, ...]:
        """The cells of `jobs`'s table: id, status, rows, failed, embeddings, created, model."""
        counted = self.rows_total is not None
        return (
            self.id,
            self.status,
            f"{self.rows_done:,}/{self.rows_total:,}" if counted else "-",
            f"{self.rows_failed:,}" if counted else "-",
            "yes" if self.embeddings else "no",
            self.created.strftime("%Y-%m-%d %H:%M"),
            self.model if self.model is not None else "(unreadable settings)",
        )


def job_line(folder: JobFolder, now: float | None = None) -> JobLine:
    """What the listing shows of one job folder; a damaged file never stops the listing."""
    state, readable = read_state(folder)
    if not readable:
        status = UNREADABLE
    elif state is None:
        status = NOT_STARTED
    else:
        status = shown_status(state, time.time() if now is None else now)
    counts = (state.rows_done, state.rows_total, state.rows_failed) if state else (None,) * 3
    from core.embeddings.store import read_meta  # numpy: only when there are jobs to list

    return JobLine(
        id=folder.id,
        status=status,
        rows_done=counts[0],
        rows_total=counts[1],
        rows_failed=counts[2],
        model=_model(folder),
        created=_created(folder, state),
        embeddings=read_meta(folder.path) is not None,
    )


def read_state(folder: JobFolder) -> tuple[JobState | None, bool]:
    """The job's saved progress (None before it first ran) and whether its state file could be
    read: a half-written, hand-edited or foreign state.json gives (None, False)."""
    try:
        state = folder.state()
    except (OSError, ValueError, TypeError):  # JSONDecodeError and UnicodeDecodeError included
        return None, False
    if state is None:
        return None, True
    counts = (state.rows_done, state.rows_total, state.rows_failed)
    times = (state.started, state.updated)
    sound = (
        isinstance(state.status, str)
        and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in counts)
        and all(isinstance(t, int | float) and not isinstance(t, bool) for t in times)
    )
    return (state, True) if sound else (None, False)


def _model(folder: JobFolder) -> str | None:
    """The model the job uses, or None when its settings cannot be read."""
    try:
        return folder.spec().model
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


def _created(folder: JobFolder, state: JobState | None) -> datetime:
    """When the job started (its state's `started`), else when its settings were written, in
    local time."""
    if state is not None:
        try:
            return datetime.fromtimestamp(state.started).astimezone()
        except (OverflowError, OSError, ValueError):  # a nonsense time: the folder's instead
            pass
    try:
        stamp = (folder.path / SPEC_FILE).stat().st_mtime
    except OSError:
        stamp = 0.0
    return datetime.fromtimestamp(stamp).astimezone()
