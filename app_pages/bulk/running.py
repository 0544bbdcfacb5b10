"""A bulk job while it runs: the process's background runner, the live progress line with its
Stop button, and Resume for a job that stopped (with the model the job used)."""

from __future__ import annotations

import streamlit as st

from app_pages.widgets.model_picker import require_classifier
from app_pages.widgets.settings import app_settings
from core.bulk.jobs import JobFolder, JobSpec, JobState
from core.bulk.runner import BackgroundJobs, server_fetch_options
from core.engine.classifier import ClipClassifier
from core.fetch.download import FetchOptions

STOPPING = "bulk_stopping"  # ids of jobs whose Stop was pressed in this session


@st.cache_resource
def background_jobs() -> BackgroundJobs:
    """The process's bulk-job runner, shared by every browser session."""
    return BackgroundJobs()


def job_fetch_options(classifier: ClipClassifier) -> FetchOptions:
    """Download options for bulk jobs: JPEGs decoded at reduced scale (the model sees 224 px)."""
    return server_fetch_options(app_settings(), classifier)


def progress_text(state: JobState) -> str:
    """One line: what the job is doing now, rows done, speed, failures, time left."""
    if not state.rows_total:
        return "Starting: reading the CSV…"
    if not state.rows_done:
        return f"{state.message or 'Starting'}… 0 / {state.rows_total:,} rows"
    left = "" if state.seconds_left is None else f" · about {state.seconds_left:,.0f} s left"
    return (
        f"{state.rows_done:,} / {state.rows_total:,} rows · {state.images_per_second:.1f} "
        f"images/s · {state.rows_failed:,} failed{left}"
    )


@st.fragment(run_every=1.0)
def live_progress(folder: JobFolder) -> None:
    """Polls the job's state file every second while it runs; reruns the page when it ends."""
    state = folder.state()
    if state is None or not background_jobs().is_running(folder):
        st.rerun(scope="app")
    fraction = state.rows_done / state.rows_total if state.rows_total else 0.0
    stopping = folder.id in st.session_state.setdefault(STOPPING, set())
    text = "Stopping after the rows in progress…" if stopping else progress_text(state)
    st.progress(min(fraction, 1.0), text=text)
    st.button("Stop", key="bulk_stop", disabled=stopping, on_click=stop_job, args=(folder,))


def stop_job(folder: JobFolder) -> None:
    """Ask the job to stop; the progress line says so from the very next redraw."""
    background_jobs().stop(folder)
    st.session_state.setdefault(STOPPING, set()).add(folder.id)


def job_classifier(spec: JobSpec, to: str) -> ClipClassifier | None:
    """The loaded model when it is the one the job used (to resume or retry it); else a
    warning saying which model to load, and None."""
    classifier = require_classifier()
    if classifier.name == spec.model:
        return classifier
    st.warning(f"This job used the model '{spec.model}'; load it in the sidebar to {to}.")
    return None


def resume_button(folder: JobFolder, spec: JobSpec) -> None:
    """Resume a job that stopped, when the model it used is the one loaded."""
    classifier = job_classifier(spec, "resume")
    if classifier is None:
        return
    if st.button("Resume", type="primary", key="bulk_resume"):
        background_jobs().start(folder, classifier, job_fetch_options(classifier), resume=True)
        st.rerun()


def show_running_elsewhere(folder: JobFolder, state: JobState) -> None:
    """A job another process is running (the command line, another server): its progress as
    last saved, and no Resume, which would write the same results twice."""
    fraction = state.rows_done / state.rows_total if state.rows_total else 0.0
    st.info(
        "This job is running in another process (started from the command line or another "
        "app server); its results appear here when it ends. Refresh the page to see its progress."
    )
    st.progress(min(fraction, 1.0), text=progress_text(state))
