"""Page "Bulk CSV": a CSV of product image URLs in, the same CSV with predicted categories out.

The parts live in app_pages/bulk/: picking the job, running it, its results and their review,
and the tools that work from the image embeddings kept with a job (job_tools.py): re-labelling
it with another label set (versions and what changed), searching, mapping and near-duplicates.
"""

from __future__ import annotations

import streamlit as st

from app_pages.bulk.job_picker import choose_job, start_example
from app_pages.bulk.job_tools import show_job_tools
from app_pages.bulk.label_choice import job_label_sets
from app_pages.bulk.results import show_results
from app_pages.bulk.running import (
    background_jobs,
    job_fetch_options,
    live_progress,
    progress_text,
    resume_button,
    show_running_elsewhere,
)
from app_pages.bulk.spark_run import (
    runs_on_spark_now,
    spark_note,
    spark_progress,
    spark_start_button,
    spark_stopped,
)
from app_pages.bulk.text_choice import describe_text_use, product_text_choice
from app_pages.widgets.model_picker import require_classifier
from core.bulk.csv_input import CsvInputError, inspect_csv, preview
from core.bulk.jobs import JobFolder, JobSpec, default_batch_size, running_elsewhere
from core.errors import plural


def configure_and_start(folder: JobFolder) -> None:
    """Preview the upload, pick the URL column and categories, start the job."""
    try:
        info = inspect_csv(folder.input_path, described_as="The uploaded CSV")
    except CsvInputError as exc:
        st.error(str(exc))
        return
    st.dataframe(preview(folder.input_path, 5), hide_index=True)
    st.caption(f"{plural(info.rows, 'row')} · {plural(len(info.columns), 'column')}")
    url_column = st.selectbox(
        "Column with the image URLs",
        info.columns,
        index=info.columns.index(info.url_column) if info.url_column else 0,
        key=f"bulk_url_column_{folder.id}",
    )
    if info.url_column is None:
        st.warning("No column looks like image URLs; choose the right one above.")
    st.subheader("Categories")
    classifier = require_classifier()
    label_sets = job_label_sets(classifier, "bulk_sets")
    st.subheader("Product text")
    text = product_text_choice(info, url_column, classifier, f"bulk_text_columns_{folder.id}")
    with st.expander("Settings"):
        top_k = st.number_input("Labels kept per row (top_categories)", 1, 20, 5, key="bulk_top_k")
        batch_size = st.number_input(
            "Images per model batch",
            1,
            256,
            default_batch_size(classifier.device.type),
            key="bulk_batch",
            help="Default for this device: 16 on a CPU (measured fastest there), 32 on a GPU.",
        )
        workers = st.number_input("Parallel downloads", 1, 64, 16, key="bulk_workers")
    unusable = label_sets is None or text is None

    def make_spec() -> JobSpec:
        return JobSpec(
            input_csv=str(folder.input_path),
            url_column=url_column,
            label_sets=label_sets,
            model=classifier.name,
            top_k=int(top_k),
            batch_size=int(batch_size),
            workers=int(workers),
            text_columns=text.columns,
            text_mode=text.mode,
            text_weight=text.weight,
        ).with_input_fingerprint()

    if st.button("Start labelling", type="primary", disabled=unusable, key="bulk_start"):
        folder.write_spec(make_spec())
        background_jobs().start(folder, classifier, job_fetch_options(classifier))
        st.rerun()
    spark_start_button(folder, make_spec, unusable)


def show_job(folder: JobFolder) -> None:
    """Progress while running; otherwise the outcome, results, review and downloads, and the
    tools on its kept image embeddings: re-label, search, map, near-duplicates."""
    spec, state = folder.spec(), folder.state()
    names = ", ".join(f"{s.name} ({len(s.labels)})" for s in spec.label_sets)
    st.caption(
        f"Job {folder.id} · URL column '{spec.url_column}' · label sets: {names}"
        f"{describe_text_use(spec)}{spark_note(folder)}"
    )
    if background_jobs().is_running(folder):
        live_progress(folder)
        return
    if runs_on_spark_now(folder):
        spark_progress(folder)
        return
    if spark_stopped(folder):
        return
    if running_elsewhere(state):
        show_running_elsewhere(folder, state)
        return
    if state is None:
        st.info("This job has not run yet.")
        resume_button(folder, spec)
        return
    if state.status == "failed":
        st.error(f"The job failed: {state.message}")
        return
    if state.status in ("running", "interrupted", "stopped"):
        why = "was stopped" if state.status == "stopped" else "was interrupted"
        st.warning(
            f"The job {why} after {state.rows_done:,} of {state.rows_total:,} rows. "
            "Resume to continue where it left off; what is done can be downloaded."
        )
        resume_button(folder, spec)
    else:
        st.success(progress_text(state).split(" · about")[0])
    if state.rows_done:
        show_results(folder, spec)
        show_job_tools(folder, spec, state)


st.title("Bulk CSV")
st.caption(
    "Label every row of a CSV of product image URLs. The job runs in the background: you can "
    "leave this page or refresh it and come back; finished and stopped jobs can be downloaded."
)
classifier = require_classifier()
st.button(
    "Try an example",
    key="bulk_try_example",
    on_click=start_example,
    args=(classifier,),
    help="Label the eight example products that come with the app (works offline).",
)
job = choose_job()
if job is not None:
    if job.exists():
        show_job(job)
    else:
        configure_and_start(job)
