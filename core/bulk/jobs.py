"""Bulk job folders under CLIPLAB_DATA_DIR/jobs/<id>/: settings, state and results on disk.

Everything a job knows lives in its folder, so the page can show a job after a browser refresh
or a server restart, the command line and the page can see each other's jobs, and a job can
resume after a crash:
    spec.json     what to do (input, URL column, label sets, model, batch size...)
    state.json    how far it got (rows done, bytes of results.csv that are complete, status)
    results.csv   output rows, appended as they are produced
    input.csv     the uploaded input (page jobs; command-line jobs point at the user's file)
    job.log       unexpected errors met on single rows, with their tracebacks (for a developer;
                  the row itself only says "internal error: <kind>")
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
import traceback
import uuid
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from core.engine.fusion import DEFAULT_TEXT_WEIGHT, TextUse
from core.labels.label_set import LabelSet
from core.storage import atomic_write_json, read_json

SPEC_FILE, STATE_FILE, RESULTS_FILE, INPUT_FILE, LOG_FILE = (
    "spec.json",
    "state.json",
    "results.csv",
    "input.csv",
    "job.log",
)

_LOG_LOCK = threading.Lock()  # one for all jobs: logging is rare, and folders stay picklable
CPU_BATCH_SIZE = 16
ACCELERATOR_BATCH_SIZE = 32


def default_batch_size(device_type: str) -> int:
    """Images per model batch when none is chosen, for a model on a device of this type.

    On a CPU, 16: the ViT-B/32 vision tower ran 12 % faster than at 32 (19.5 vs 17.4 img/s,
    8 alternating rounds on 2 cores; 8 and 12 were no faster, 24 slower), and a job's padded
    last batch wastes at most 15 places instead of 31. On CUDA (half precision), larger
    batches keep the device busy.
    """
    return CPU_BATCH_SIZE if device_type == "cpu" else ACCELERATOR_BATCH_SIZE


@dataclass(frozen=True)
class JobSpec:
    """What a bulk job does; saved beside its results."""

    input_csv: str
    url_column: str
    label_sets: tuple[LabelSet, ...]
    model: str
    top_k: int = 5
    batch_size: int = CPU_BATCH_SIZE
    workers: int = 16
    input_size: int = 0
    text_columns: tuple[str, ...] = ()  # product text, joined in this order (none: image only)
    text_mode: str = "image"  # image, text or both (core/engine/fusion.py)
    text_weight: float = DEFAULT_TEXT_WEIGHT

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        data = asdict(self)
        data["label_sets"] = [s.to_dict() for s in self.label_sets]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> JobSpec:
        """Inverse of to_dict."""
        sets = tuple(LabelSet.from_dict(s) for s in data["label_sets"])
        text_columns = tuple(str(c) for c in data.get("text_columns") or ())
        return cls(**{**data, "label_sets": sets, "text_columns": text_columns})

    @property
    def text_use(self) -> TextUse:
        """How the job uses product text (inactive without text columns)."""
        return TextUse(self.text_columns, self.text_mode, self.text_weight)

    def with_input_fingerprint(self) -> JobSpec:
        """This spec with the input file's size recorded (a resume checks it is unchanged)."""
        return replace(self, input_size=Path(self.input_csv).stat().st_size)


@dataclass
class JobState:
    """Progress of a job. rows_done rows are complete in the first results_bytes of results.csv."""

    status: str = "running"
    rows_total: int = 0
    rows_done: int = 0
    rows_failed: int = 0
    results_bytes: int = 0
    images_per_second: float = 0.0
    seconds_left: float | None = None
    message: str = ""
    started: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    pid: int | None = None  # the process running the job, while it runs


STALE_AFTER_SECONDS = 300.0  # a running job saves its state about once a second


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists, owned by someone else
    return True


def running_elsewhere(state: JobState | None, now: float | None = None) -> bool:
    """Whether another process is running the job now: saved as running by a process other
    than this one that still exists, and saved recently (a pid can be reused by a new process
    long after the job's has gone)."""
    if state is None or state.status != "running" or state.pid in (None, os.getpid()):
        return False
    return _saved_recently(state, now) and _process_alive(state.pid)


def _saved_recently(state: JobState, now: float | None) -> bool:
    return (time.time() if now is None else now) - state.updated <= STALE_AFTER_SECONDS


def shown_status(state: JobState, now: float | None = None) -> str:
    """The status to show anyone but the process running the job: a job saved as running
    whose process is gone (a crash, a closed shell, a server restart) is interrupted. A state
    saved before pids were recorded counts as running while it was saved recently."""
    if state.status != "running":
        return state.status
    if state.pid is None:
        return "running" if _saved_recently(state, now) else "interrupted"
    return "running" if running_elsewhere(state, now) else "interrupted"


def _slug(text: str) -> str:
    return re.sub(r"[^0-9A-Za-z]+", "-", text).strip("-")[:40] or "job"


class JobFolder:
    """One job's folder; reads and writes its spec, state and results."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def id(self) -> str:
        """The folder name, unique under the jobs root."""
        return self.path.name

    @property
    def results_path(self) -> Path:
        """Where output rows are appended."""
        return self.path / RESULTS_FILE

    @property
    def input_path(self) -> Path:
        """Where an uploaded input is kept."""
        return self.path / INPUT_FILE

    @property
    def log_path(self) -> Path:
        """Where unexpected per-row errors are logged with their tracebacks."""
        return self.path / LOG_FILE

    def log_exception(self, context: str, exc: BaseException) -> None:
        """Append `exc`'s traceback to the job's log (threads may call this at once)."""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        text = "".join(traceback.format_exception(exc))
        try:
            with _LOG_LOCK, open(self.log_path, "a", encoding="utf-8") as handle:
                handle.write(f"{stamp} {context}\n{text}\n")
        except OSError:  # a full disk or a removed folder must not end the job
            pass

    def exists(self) -> bool:
        """Whether the job has been created (its spec is on disk)."""
        return (self.path / SPEC_FILE).is_file()

    def spec(self) -> JobSpec:
        """The job's settings."""
        return JobSpec.from_dict(read_json(self.path / SPEC_FILE))  # type: ignore[arg-type]

    def write_spec(self, spec: JobSpec) -> None:
        """Save the job's settings."""
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.path / SPEC_FILE, spec.to_dict())

    def state(self) -> JobState | None:
        """The job's saved progress, or None before it first ran."""
        path = self.path / STATE_FILE
        if not path.is_file():
            return None
        return JobState(**read_json(path))  # type: ignore[arg-type]

    def write_state(self, state: JobState) -> None:
        """Save progress atomically (the page polls this file)."""
        state.updated = time.time()
        atomic_write_json(self.path / STATE_FILE, asdict(state))

    def reset(self) -> None:
        """Forget results and progress (the spec and input stay)."""
        for name in (STATE_FILE, RESULTS_FILE):
            (self.path / name).unlink(missing_ok=True)


def jobs_root(data_dir: str | Path) -> Path:
    """The folder holding all job folders."""
    return Path(data_dir) / "jobs"


def new_job_folder(data_dir: str | Path, name: str) -> JobFolder:
    """A fresh, uniquely named folder for a job about `name` (e.g. the uploaded file's name)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder = jobs_root(data_dir) / f"{stamp}-{_slug(Path(name).stem)}-{uuid.uuid4().hex[:6]}"
    folder.mkdir(parents=True)
    return JobFolder(folder)


def list_jobs(data_dir: str | Path) -> list[JobFolder]:
    """All created jobs, newest first (by when their settings were written: page and
    command-line jobs interleaved by time, whatever their names)."""
    root = jobs_root(data_dir)
    if not root.is_dir():
        return []
    jobs = [JobFolder(p) for p in root.iterdir() if (p / SPEC_FILE).is_file()]
    return sorted(jobs, key=lambda job: (_created(job), job.id), reverse=True)


def _created(job: JobFolder) -> float:
    try:
        return (job.path / SPEC_FILE).stat().st_mtime
    except OSError:
        return 0.0


def discard_unstarted(folder: JobFolder) -> None:
    """Remove a job folder that was never started (an upload replaced before Start); a
    started job (one with settings) is never touched."""
    if folder.path.is_dir() and not folder.exists():
        shutil.rmtree(folder.path, ignore_errors=True)


def find_job(data_dir: str | Path, job_id: str) -> JobFolder | None:
    """The job with this id (a folder name under the jobs root), or None: an id from a page
    address is checked, never used as a path."""
    root = jobs_root(data_dir)
    if not job_id or job_id != Path(job_id).name or job_id.startswith("."):
        return None
    folder = JobFolder(root / job_id)
    return folder if folder.exists() else None
