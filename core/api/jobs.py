"""Bulk jobs over HTTP, in the very job folders the Bulk CSV page and the command line use
(CLIPLAB_DATA_DIR/jobs/): a job started here shows on the page and in `python -m core jobs`,
and theirs show here. Jobs run in background threads of the server (one BackgroundJobs per
app), with the model the server runs.

    POST /v1/jobs                 a CSV upload and its options -> 201 {id, status}, started
    GET  /v1/jobs                 every job, newest first (as `python -m core jobs --json`)
    GET  /v1/jobs/{id}            its status and progress
    POST /v1/jobs/{id}/stop       stop after the rows in progress (resumable)
    POST /v1/jobs/{id}/resume     go on where it stopped (409 while it runs)

Results, re-labelling and search are in job_files.py.
"""

from __future__ import annotations

import shutil
import threading
from dataclasses import replace
from typing import Annotated

from fastapi import APIRouter, FastAPI, File, Form, Request, UploadFile
from pydantic import BaseModel, Field

from core.api.deps import service_of, settings_of
from core.api.errors import Conflict, NotFound
from core.api.job_labels import job_label_sets, text_lines
from core.bulk.csv_input import CsvInfo, check_text_columns, inspect_csv
from core.bulk.job_list import JobLine, job_line, read_state
from core.bulk.jobs import (
    JobFolder,
    JobSpec,
    default_batch_size,
    discard_unstarted,
    find_job,
    list_jobs,
    new_job_folder,
    running_elsewhere,
)
from core.bulk.runner import BackgroundJobs, server_fetch_options
from core.engine.classifier import ClipClassifier
from core.engine.fusion import DEFAULT_TEXT_WEIGHT, TextUse, check_text_model
from core.errors import UserError, clip_text, short_list
from core.labels.label_set import LabelSet

router = APIRouter(tags=["jobs"])
UPLOAD = "the uploaded CSV"
CSV_FIELD = "The CSV: one product a row, with a column of image URLs."
_RUNNER_LOCK = threading.Lock()


class JobForm(BaseModel):
    """A new job's options (multipart form fields beside the CSV `file`). Categories: `labels`
    (one per line; a set called "category", with `templates`) and/or `label_sets` (saved sets'
    names, the field repeated for several); a trained linear-probe model labels with its own
    classes when both are left out. `text_columns` (repeated, in the order their texts are
    joined) hold product text, used as `text_mode` says (default: both with text columns)."""

    labels: str = ""
    label_sets: list[str] = []
    templates: str = ""
    url_column: str = ""  # default: the column detected as image URLs
    top_k: int = Field(5, ge=1, le=20)
    batch_size: int | None = Field(None, ge=1, le=256)  # default: 16 on a CPU, 32 on a GPU
    workers: int = Field(16, ge=1, le=64)
    text_columns: list[str] = []
    text_mode: str = ""  # image, text or both
    text_weight: float = Field(DEFAULT_TEXT_WEIGHT, ge=0.0, le=1.0)


class JobAccepted(BaseModel):
    """The job acted on and its status now."""

    id: str
    status: str


class JobSummary(BaseModel):
    """A job as listed (`python -m core jobs --json`): counts are null before it first ran or
    when its state cannot be read; `created` is local ISO 8601 with its UTC offset."""

    id: str
    status: str  # running, finished, stopped, interrupted, failed, not started, unreadable
    rows_done: int | None
    rows_total: int | None
    rows_failed: int | None
    model: str | None
    created: str
    embeddings: bool  # whether it can be re-labelled and searched


class JobStatus(JobSummary):
    """A job's progress and settings."""

    images_per_second: float | None = None
    seconds_left: float | None = None
    message: str = ""
    url_column: str | None = None
    label_sets: list[str] = []
    text_columns: list[str] = []
    text_mode: str | None = None


def background_jobs(app: FastAPI) -> BackgroundJobs:
    """The app's bulk-job runner, made on first use."""
    with _RUNNER_LOCK:
        if getattr(app.state, "bulk_jobs", None) is None:
            app.state.bulk_jobs = BackgroundJobs()
        return app.state.bulk_jobs


def runner_of(request: Request) -> BackgroundJobs:
    return background_jobs(request.app)


def shutdown_jobs(app: FastAPI, timeout: float = 30.0) -> None:
    """Stop the app's running jobs after their rows in progress (for the app's shutdown)."""
    runner = getattr(app.state, "bulk_jobs", None)
    if runner is not None:
        runner.shutdown(timeout)


def open_job(request: Request, job_id: str) -> JobFolder:
    """The job `job_id` (a folder name under the jobs root); NotFound when there is none."""
    folder = find_job(settings_of(request).data_dir, job_id)
    if folder is None:
        raise NotFound(f"There is no job '{clip_text(job_id, 100)}'; GET /v1/jobs lists them.")
    return folder


def listed(folder: JobFolder, runner: BackgroundJobs) -> JobLine:
    """The job as listed; one this server runs is running (the listing's own rule sees only
    other processes' jobs as running)."""
    line = job_line(folder)
    if runner.is_running(folder):
        return replace(line, status="running")
    return line


@router.get("/jobs", response_model=list[JobSummary])
def list_all_jobs(request: Request) -> list[dict]:
    """Every bulk job, newest first: the API's, the Bulk page's and `classify`'s."""
    runner = runner_of(request)
    return [listed(f, runner).to_json() for f in list_jobs(settings_of(request).data_dir)]


@router.get("/jobs/{job_id}", response_model=JobStatus)
def job_status(job_id: str, request: Request) -> JobStatus:
    """The job's status and progress: rows done of total, images/s, failures, seconds left."""
    folder = open_job(request, job_id)
    line = listed(folder, runner_of(request))
    status = JobStatus(**line.to_json())
    state, _readable = read_state(folder)
    if state is not None:
        status.images_per_second = state.images_per_second
        status.seconds_left = state.seconds_left
        status.message = state.message
    try:
        spec = spec_of(folder)
    except Conflict:
        return status
    status.url_column = spec.url_column
    status.label_sets = [s.name for s in spec.label_sets]
    status.text_columns = list(spec.text_columns)
    status.text_mode = spec.text_mode
    return status


@router.post("/jobs", status_code=201, response_model=JobAccepted)
def create_job(
    request: Request,
    form: Annotated[JobForm, Form()],
    file: UploadFile = File(..., description=CSV_FIELD),  # noqa: B008
) -> JobAccepted:
    """Label every row of the uploaded CSV in the background, with the server's model; refused
    (one sentence, no job left behind) for an unusable CSV, column or label set."""
    settings = settings_of(request)
    classifier = service_of(request).ready()
    sets = job_label_sets(
        classifier, settings, text_lines(form.labels), form.label_sets, text_lines(form.templates)
    )
    folder = new_job_folder(settings.data_dir, file.filename or "upload.csv")
    try:
        with folder.input_path.open("wb") as target:
            shutil.copyfileobj(file.file, target, 1 << 20)
        spec = job_spec(folder, form, classifier, sets)
        folder.write_spec(spec)
    except BaseException:
        discard_unstarted(folder)
        raise
    runner_of(request).start(folder, classifier, server_fetch_options(settings, classifier))
    return JobAccepted(id=folder.id, status="running")


def job_spec(
    folder: JobFolder, form: JobForm, classifier: ClipClassifier, sets: tuple[LabelSet, ...]
) -> JobSpec:
    """The new job's settings, the upload and its columns checked."""
    info = inspect_csv(folder.input_path, described_as="The uploaded CSV")
    url_column = chosen_url_column(info, form.url_column.strip())
    columns = tuple(dict.fromkeys(c for c in form.text_columns if c.strip()))
    mode = form.text_mode.strip() or ("both" if columns else "image")
    text = TextUse(columns, mode, form.text_weight).checked()
    check_text_columns(info, url_column, text.columns, UPLOAD)
    check_text_model(classifier, text)
    return JobSpec(
        input_csv=str(folder.input_path),
        url_column=url_column,
        label_sets=sets,
        model=classifier.name,
        top_k=form.top_k,
        batch_size=form.batch_size or default_batch_size(classifier.device.type),
        workers=form.workers,
        text_columns=text.columns,
        text_mode=text.mode,
        text_weight=text.weight,
    ).with_input_fingerprint()


def chosen_url_column(info: CsvInfo, chosen: str) -> str:
    """The column of image URLs: the one named, else the one detected."""
    columns = short_list(info.columns, 12)
    if chosen and chosen not in info.columns:
        raise UserError(
            f"Column '{clip_text(chosen, 100)}' is not in {UPLOAD} (columns: {columns})."
        )
    if not chosen and info.url_column is None:
        raise UserError(
            f"No column of image URLs found in {UPLOAD}; name it with url_column (columns: "
            f"{columns})."
        )
    return chosen or info.url_column  # type: ignore[return-value]


@router.post("/jobs/{job_id}/stop", status_code=202, response_model=JobAccepted)
def stop_job(job_id: str, request: Request) -> JobAccepted:
    """Stop the job after the rows in progress; what is done stays, and it can be resumed."""
    folder, runner = open_job(request, job_id), runner_of(request)
    if not runner.is_running(folder):
        refuse_elsewhere(folder, "stop it there")
        status = listed(folder, runner).status
        raise Conflict(f"Job '{folder.id}' is not running (it is {status}).")
    runner.stop(folder)
    return JobAccepted(id=folder.id, status="stopping")


@router.post("/jobs/{job_id}/resume", status_code=202, response_model=JobAccepted)
def resume_job(job_id: str, request: Request) -> JobAccepted:
    """Go on with a stopped or interrupted job where it left off, with the model it used."""
    folder, runner = open_job(request, job_id), runner_of(request)
    if runner.is_running(folder):
        raise Conflict(f"Job '{folder.id}' is already running.")
    refuse_elsewhere(folder, "wait for it to end")
    state, _readable = read_state(folder)
    if state is not None and state.status == "finished":
        raise Conflict(f"Job '{folder.id}' has finished; there is nothing to resume.")
    classifier = service_of(request).ready()
    spec = spec_of(folder)
    if spec.model != classifier.name:
        raise Conflict(
            f"Job '{folder.id}' used the model '{spec.model}', not the model this server runs "
            f"('{classifier.name}'); resume it where that model runs."
        )
    options = server_fetch_options(settings_of(request), classifier)
    if not runner.start(folder, classifier, options, resume=True):
        raise Conflict(f"Job '{folder.id}' is already running.")
    return JobAccepted(id=folder.id, status="running")


def spec_of(folder: JobFolder) -> JobSpec:
    """The job's settings; Conflict when its spec.json cannot be read (damaged, or written by
    another version of the app)."""
    try:
        return folder.spec()
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise Conflict(f"The settings of job '{folder.id}' cannot be read.") from exc


def refuse_elsewhere(folder: JobFolder, what_to_do: str) -> None:
    """Conflict when another process (the command line, the web app) runs the job now."""
    state, _readable = read_state(folder)
    if running_elsewhere(state):
        raise Conflict(
            f"Job '{folder.id}' is running in another process (pid {state.pid}); {what_to_do}."
        )
