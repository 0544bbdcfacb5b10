"""The labelled data to train on: an uploaded CSV (kept in the data folder) or a bulk job's
corrected output, the image, label and caption columns, and the images per class."""

from __future__ import annotations

import plotly.express as px
import streamlit as st
from streamlit.runtime.uploaded_file_manager import UploadedFile

from app_pages.widgets.settings import app_settings
from app_pages.widgets.uploads import csv_upload
from core.bulk.csv_input import CsvInputError, inspect_csv
from core.bulk.jobs import JobFolder, list_jobs
from core.errors import plural, short_list
from core.training.data import (
    MIN_IMAGES_PER_CLASS,
    LabelledData,
    guess_label_column,
    read_labelled_csv,
)
from core.training.data_files import bulk_job_as_data, keep_uploaded_csv, results_version

DATA_KEY = "ft_data_path"
EMBEDDINGS_JOB_KEY = "ft_embeddings_job"  # a bulk job whose stored embeddings a probe may use
DATA_NAME_KEY = "ft_data_name"  # the uploaded file's name or the bulk job's id, for people
SOURCE_UPLOAD, SOURCE_BULK = "Upload a labelled CSV", "The output of a bulk job"


def choose_data() -> str | None:
    """The labelled CSV: an upload (kept in the data folder) or a bulk job's results."""
    settings = app_settings()
    source = st.radio(
        "Labelled data", [SOURCE_UPLOAD, SOURCE_BULK], horizontal=True, key="ft_source"
    )
    if source == SOURCE_UPLOAD:
        upload = csv_upload(
            "CSV with an image URL column and a label column", "ft_upload", keep_upload
        )
        if upload is None:
            return None
        st.session_state[DATA_NAME_KEY] = upload.name
        st.session_state[EMBEDDINGS_JOB_KEY] = ""
        return st.session_state[DATA_KEY]
    jobs = [j for j in list_jobs(settings.data_dir) if j.results_path.is_file()]
    if not jobs:
        st.info("No bulk jobs with results yet.")
        return None
    job = st.selectbox("Bulk job", jobs, format_func=lambda j: j.id, key="ft_bulk_job")
    only_human = st.checkbox(
        "Only the rows whose category a person set in the review grid", key="ft_only_human"
    )
    path, rows = bulk_output_as_data(job, only_human)
    st.session_state[EMBEDDINGS_JOB_KEY] = str(job.path)
    st.session_state[DATA_NAME_KEY] = f"bulk job {job.id}" + (
        " (human labels)" if only_human else ""
    )
    st.caption(
        f"{rows:,} rows: the job's results with the corrections from its review grid; use "
        "the image URL column and `predicted_category` as the label."
    )
    return path


def keep_upload(upload: UploadedFile) -> None:
    """A newly dropped labelled CSV, kept in the data folder as the data to train on."""
    path = keep_uploaded_csv(app_settings().data_dir, upload.getvalue(), upload.file_id)
    st.session_state[DATA_KEY] = str(path)


def bulk_output_as_data(job: JobFolder, only_human: bool) -> tuple[str, int]:
    """The job's corrected results written as a CSV once per version of its results and
    corrections (not on every rerun of the page); returns the path and the row count."""
    key = f"ft_bulk_data::{job.id}::{only_human}::{results_version(job)}"
    if key not in st.session_state:
        path, rows = bulk_job_as_data(app_settings().data_dir, job, only_human)
        st.session_state[key] = (str(path), rows)
    return st.session_state[key]


def column_choices(path: str) -> tuple[str, str, str | None] | None:
    """The image, label and optional caption columns, guessed first; None (reason shown) when
    the CSV cannot be read."""
    try:
        info = inspect_csv(path, described_as="The labelled CSV")
    except CsvInputError as exc:
        st.error(str(exc))
        return None
    columns = info.columns
    image_default = columns.index(info.url_column) if info.url_column in columns else 0
    label_guess = guess_label_column(path, columns[image_default])
    others = [i for i in range(len(columns)) if i != image_default] or [0]
    label_default = columns.index(label_guess) if label_guess else others[0]
    left, middle, right = st.columns(3)
    image = left.selectbox("Image URL column", columns, index=image_default, key="ft_image_col")
    label = middle.selectbox("Label column", columns, index=label_default, key="ft_label_col")
    caption = right.selectbox(
        "Caption/title column (optional)", ["(none)", *columns], key="ft_caption_col"
    )
    return image, label, None if caption == "(none)" else caption


def show_class_counts(
    path: str, image: str, label: str, caption: str | None
) -> LabelledData | None:
    """The labelled data with its class counts shown; None (reason shown) when unusable."""
    try:
        data = read_labelled_csv(path, image, label, caption)
    except CsvInputError as exc:
        st.error(str(exc))
        return None
    counts = data.class_counts().most_common()
    figure = px.bar(
        x=[c for c, _ in counts], y=[n for _, n in counts], labels={"x": "class", "y": "images"}
    )
    figure.update_layout(title="Images per class", height=320, margin=dict(t=50, b=40))
    st.plotly_chart(figure, key="ft_class_counts")
    st.caption(
        f"{plural(len(data.items), 'labelled image')} in {plural(len(counts), 'class', 'classes')}"
        + (
            f"; {data.skipped:,} rows without an image or label are left out."
            if data.skipped
            else "."
        )
    )
    small = data.small_classes()
    if small:
        st.warning(
            f"{len(small)} classes have fewer than {MIN_IMAGES_PER_CLASS} images "
            f"({short_list(small, 10)}): too few to learn "
            "them well or to judge them on the validation split."
        )
    return data
