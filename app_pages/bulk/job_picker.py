"""Which bulk job the session works on: a fresh upload, one picked from earlier jobs, or the
example job; the job's id is kept in the page's address (?job=ID) so a refresh comes back to it."""

from __future__ import annotations

import streamlit as st
from streamlit.runtime.uploaded_file_manager import UploadedFile

from app_pages.bulk.running import background_jobs, job_fetch_options
from app_pages.widgets.settings import app_settings
from app_pages.widgets.uploads import csv_upload
from core.bulk.example_job import new_example_job
from core.bulk.jobs import (
    JobFolder,
    discard_unstarted,
    find_job,
    list_jobs,
    new_job_folder,
)
from core.engine.classifier import ClipClassifier
from core.errors import plural

JOB_KEY = "bulk_job_path"
SOURCE_UPLOAD, SOURCE_EARLIER = "Upload a CSV", "Open an earlier job"


def describe(job: JobFolder) -> str:
    """A job in the list: its id, state and size. Rows done are left out: a label that changed
    with every row would make the picker lose its selection while a job runs."""
    state = job.state()
    if state is None:
        return f"{job.id} · not started"
    return f"{job.id} · {state.status} · {plural(state.rows_total, 'row')}"


def start_example(classifier: ClipClassifier) -> None:
    """A job over the example products CSV with the example categories (or, for a linear
    probe, its own classes), started at once and opened."""
    folder = new_example_job(
        app_settings().data_dir, classifier.name, classifier.device.type, classifier.classes
    )
    background_jobs().start(folder, classifier, job_fetch_options(classifier))
    st.session_state[JOB_KEY] = str(folder.path)
    st.session_state["bulk_source"] = SOURCE_EARLIER


def pick_job() -> None:
    """The job picked in the list becomes the session's job."""
    st.session_state[JOB_KEY] = str(st.session_state["bulk_earlier"].path)


def reopen_from_address() -> None:
    """A refresh starts a new session: the job named in the page's address (?job=ID) is opened
    again, so a running job is never lost behind an empty upload form."""
    if st.session_state.get(JOB_KEY):
        return
    job = find_job(app_settings().data_dir, st.query_params.get("job", ""))
    if job is not None:
        st.session_state[JOB_KEY] = str(job.path)
        st.session_state["bulk_source"] = SOURCE_EARLIER


def choose_job() -> JobFolder | None:
    """The job this session works on: a fresh upload, or one picked from earlier jobs; its id
    goes into the page's address so that a refresh comes back to it."""
    reopen_from_address()
    source = st.radio("Input", [SOURCE_UPLOAD, SOURCE_EARLIER], horizontal=True, key="bulk_source")
    if source == SOURCE_UPLOAD:
        upload = csv_upload(
            "CSV of product image URLs (one row per product)", "bulk_upload", new_upload_job
        )
        if upload is None:
            return None
    elif not pick_earlier_job():
        return None
    path = st.session_state.get(JOB_KEY)
    if not path:
        return None
    folder = JobFolder(path)
    st.query_params["job"] = folder.id
    return folder


def new_upload_job(upload: UploadedFile) -> None:
    """A newly dropped CSV becomes the session's job (not started yet)."""
    if st.session_state.get(JOB_KEY):  # an upload replaced before Start leaves nothing
        discard_unstarted(JobFolder(st.session_state[JOB_KEY]))
    folder = new_job_folder(app_settings().data_dir, upload.name)
    folder.input_path.write_bytes(upload.getvalue())
    st.session_state[JOB_KEY] = str(folder.path)


def pick_earlier_job() -> bool:
    """The list of earlier jobs, newest first; the one picked becomes the session's job.
    False, with a hint, when there are none."""
    jobs = list_jobs(app_settings().data_dir)
    if not jobs:
        st.info("No earlier jobs yet: upload a CSV to start one.")
        return False
    current = st.session_state.get(JOB_KEY)
    paths = [str(job.path) for job in jobs]
    # The session's job is set as the picker's value on every run, so that the picker
    # shows it with its state as it is now (a job's label changes when it finishes).
    st.session_state["bulk_earlier"] = jobs[paths.index(current) if current in paths else 0]
    picked = st.selectbox(
        "Earlier jobs (newest first)",
        jobs,
        format_func=describe,
        key="bulk_earlier",
        on_change=pick_job,
    )
    st.session_state[JOB_KEY] = str(picked.path)
    return True
