"""Page "Fine-tune": train a linear probe or fine-tune CLIP from a labelled CSV, as a background
process; watch it live, cancel it, and see honestly whether it beats zero-shot.

The parts live in app_pages/training/: the data, the settings, the progress and the result.
"""

from __future__ import annotations

import streamlit as st

from app_pages.training.data_choice import choose_data, column_choices, show_class_counts
from app_pages.training.progress import live_job, training_charts
from app_pages.training.results import show_result
from app_pages.training.settings_form import training_settings
from app_pages.widgets.settings import app_settings
from core.training.job import (
    FinetuneFolder,
    list_finetune_jobs,
    new_finetune_folder,
    start_in_background,
)

JOB_KEY = "ft_job"


def choose_job() -> FinetuneFolder | None:
    """The fine-tune job shown on the Jobs tab (the session's, else the newest); None if none."""
    jobs = list_finetune_jobs(app_settings().data_dir)
    if not jobs:
        return None
    current = st.session_state.get(JOB_KEY)
    ids = [j.id for j in jobs]
    index = ids.index(current) if current in ids else 0
    chosen = st.selectbox("Job", ids, index=index, key="ft_job_pick")
    st.session_state[JOB_KEY] = chosen
    return next(j for j in jobs if j.id == chosen)


def show_job(job: FinetuneFolder) -> None:
    """A job's progress while it runs, else its result, or why it ended early."""
    spec, state = job.spec(), job.reconcile()
    where = f" · on Spark {spec.spark_master}, {spec.num_processes} processes"
    st.caption(
        f"{spec.method} · model '{spec.name}' from {spec.base_model} · data {spec.data_label}"
        f"{where if spec.spark_master else ''}"
    )
    if state is None or state.active:
        live_job(job)
        return
    if state.status == "finished":
        show_result(job)
        with st.expander("Training curves"):
            training_charts(job)
    elif state.status == "cancelled":
        st.info(f"Cancelled at epoch {state.epoch}, step {state.step}: {state.message}")
    else:
        st.error(f"The job {state.status}: {state.message}")


st.title("Fine-tune")
st.caption(
    "When zero-shot is not good enough: train on a few hundred labelled images, then see on a "
    "held-out validation split whether the result really beats zero-shot. Training runs in the "
    "background; refreshing the page does not stop it."
)
new_tab, jobs_tab = st.tabs(["New training", "Jobs"])
with new_tab:
    data_path = choose_data()
    columns = column_choices(data_path) if data_path else None
    data = show_class_counts(data_path, columns) if columns else None
    if data is not None:
        spec = training_settings(data_path, columns, data)
        if st.button("Start training", type="primary", disabled=spec is None, key="ft_start"):
            job = new_finetune_folder(app_settings().data_dir, spec)
            start_in_background(job)
            st.session_state[JOB_KEY] = job.id
            st.session_state["ft_job_pick"] = job.id  # the Jobs tab shows the new job
            st.success(f"Started job {job.id}: follow it on the Jobs tab.")
with jobs_tab:
    job = choose_job()
    if job is None:
        st.info(
            "No fine-tuning jobs yet. Jobs started with `python -m core finetune` show here too."
        )
    else:
        show_job(job)
