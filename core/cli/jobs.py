"""`python -m core jobs [--json]`: the bulk jobs under CLIPLAB_DATA_DIR/jobs/ (the folders the
Bulk CSV page and `classify` use), newest first: status, rows, model, when created, and whether
the job has stored image embeddings. Reads only the job folders' small JSON files, so it never
imports torch and answers at once.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from datetime import datetime

from core.bulk.jobs import (
    SPEC_FILE,
    STATE_FILE,
    JobFolder,
    JobState,
    jobs_root,
    list_jobs,
    shown_status,
)
from core.cli.common import CliError
from core.config import load_settings
from core.errors import plural

# A running job saves its state at least every second or so (core/bulk/pipeline.py); one whose
# state has not moved for this long has lost its process (a crash, a killed shell, a server
# restart) and is shown as interrupted, as the Bulk CSV page shows a job no thread is running.
NOT_STARTED, UNREADABLE = "not started", "unreadable"
NO_JOBS = (
    "No bulk jobs yet in {root}: start one with `python -m core classify --input IN.csv "
    "--labels LABELS --output OUT.csv` or on the web app's Bulk CSV page."
)
HEADER = ("id", "status", "rows", "failed", "embeddings", "created", "model")


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
        """The JSON object of --json (created as local ISO 8601 with its UTC offset)."""
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
        """The table's cells, in HEADER's order."""
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


def cmd_jobs(args: argparse.Namespace) -> int:
    """Print the bulk jobs, newest first, as a table or (--json) a JSON list."""
    data_dir = load_settings().data_dir
    root = jobs_root(data_dir)
    try:
        lines = [job_line(folder) for folder in list_jobs(data_dir)]
    except OSError as exc:
        raise CliError(f"Cannot read the jobs folder '{root}' ({exc.strerror or exc}).") from None
    if args.json:
        print(json.dumps([line.to_json() for line in lines], indent=2, ensure_ascii=False))
    elif not lines:
        print(NO_JOBS.format(root=root))
    else:
        print(format_table(lines))
    damaged = sum(line.status == UNREADABLE for line in lines)
    if damaged:
        print(
            f"note: the {STATE_FILE} of {plural(damaged, 'job')} could not be read (damaged or "
            f"not written by this app); shown as {UNREADABLE}.",
            file=sys.stderr,
        )
    return 0


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


def format_table(lines: list[JobLine]) -> str:
    """A plain table with a header, each column as wide as its widest cell."""
    rows = [HEADER, *(line.cells() for line in lines)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )
