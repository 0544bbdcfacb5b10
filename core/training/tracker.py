"""The running side of a fine-tune job folder: state saves (also handed to a report callback),
progress lines, cancel checks and the run's clock.

Its own unit so that the run and each training method record progress the same way without
importing one another.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from core.training.job import FinetuneFolder, FinetuneState
from core.training.trainers import TrainingCancelled

Report = Callable[[FinetuneState], None]


class RunTracker:
    """Writes a running job's state and progress into its folder; started when the run starts."""

    def __init__(self, folder: FinetuneFolder, state: FinetuneState, report: Report | None) -> None:
        self.folder, self.state, self.report = folder, state, report
        self.started = time.monotonic()

    def save(self, **changes: object) -> None:
        """Change fields of the state, write it, then report it."""
        for key, value in changes.items():
            setattr(self.state, key, value)
        self.folder.write_state(self.state)
        if self.report is not None:
            self.report(self.state)

    def log(self, entry: dict) -> None:
        """Append one progress line: `entry` followed by the seconds since the start."""
        self.folder.append_progress({**entry, "elapsed": self.elapsed()})

    def check_cancel(self) -> None:
        """Raise TrainingCancelled once the user asked to stop."""
        if self.folder.cancel_requested():
            raise TrainingCancelled

    def elapsed(self) -> float:
        return time.monotonic() - self.started
