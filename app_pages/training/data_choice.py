"""The labelled data to train on: an uploaded CSV (kept in the data folder) or a bulk job's
corrected output, the image, label (one or more attributes), caption and product-text columns,
and the images per class of each attribute."""

from __future__ import annotations

from dataclasses import dataclass

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
TEXT_AND_CAPTION = (
    "Two ways to use a product's title: contrastive fine-tuning learns from the caption "
    "column, teaching CLIP itself that each image goes with its caption; the linear probe "
    "instead reads the product-text columns as a feature beside the image, so a title helps "
    "decide each label (and a product without one is labelled from its image). The same "
    "column can serve as either, one method at a time."
)


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


@dataclass(frozen=True)
class ColumnChoice:
    """The columns a fine-tune reads: the image, the label columns (the main attribute first),
    the caption (contrastive) and the product text (probe)."""

    image: str
    labels: tuple[str, ...]
    caption: str | None
    texts: tuple[str, ...]


def column_choices(path: str) -> ColumnChoice | None:
    """The columns, the image and main label column guessed first; None (reason shown) when
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
    left, right = st.columns(2)
    more = left.multiselect(
        "More label columns (optional)",
        [c for c in columns if c not in (image, label)],
        key="ft_more_labels",
        help="Each is one more attribute (e.g. colour beside the category), trained at once "
        "over the same images: each image is fetched and encoded once (linear probe only).",
    )
    texts = right.multiselect(
        "Product-text columns (optional)",
        [c for c in columns if c != image],
        key="ft_text_cols",
        help="Titles or descriptions the linear probe reads beside the image, joined in the "
        "order picked (put the title first).",
    )
    st.caption(TEXT_AND_CAPTION)
    caption_column = None if caption == "(none)" else caption
    return ColumnChoice(image, (label, *more), caption_column, tuple(texts))


def show_class_counts(path: str, columns: ColumnChoice) -> LabelledData | None:
    """The labelled data with each attribute's class counts shown; None (reason shown) when
    unusable."""
    try:
        data = read_labelled_csv(
            path, columns.image, columns.labels, columns.caption, columns.texts
        )
    except CsvInputError as exc:
        st.error(str(exc))
        return None
    charts = st.columns(len(columns.labels)) if len(columns.labels) > 1 else [st.container()]
    for number, (name, place) in enumerate(zip(columns.labels, charts, strict=True)):
        with place:
            class_counts_chart(data, number, name)
    classes = (
        plural(len(data.classes), "class", "classes")
        if len(columns.labels) == 1
        else ", ".join(
            f"{plural(len(data.attribute_classes(n)), 'class', 'classes')} of {name}"
            for n, name in enumerate(columns.labels)
        )
    )
    st.caption(
        f"{plural(len(data.items), 'labelled image')} in {classes}"
        + (f"; {data.with_text:,} with product text" if columns.texts else "")
        + (
            f"; {data.skipped:,} rows without an image or label are left out."
            if data.skipped
            else "."
        )
    )
    small = data.small_classes()
    if small and len(columns.labels) == 1:  # several attributes fold rare classes instead
        st.warning(
            f"{plural(len(small), 'class has', 'classes have')} fewer than "
            f"{MIN_IMAGES_PER_CLASS} images "
            f"({short_list(small, 10)}): too few to learn "
            "them well or to judge them on the validation split."
        )
    return data


def class_counts_chart(data: LabelledData, number: int, name: str) -> None:
    """Images per class of attribute `number` (the main one keeps its chart's old key)."""
    counts = data.class_counts(number).most_common()
    figure = px.bar(
        x=[c for c, _ in counts], y=[n for _, n in counts], labels={"x": name, "y": "images"}
    )
    title = "Images per class" if len(data.attributes) == 1 else f"Images per class: {name}"
    figure.update_layout(title=title, height=320, margin=dict(t=50, b=40))
    st.plotly_chart(figure, key="ft_class_counts" if number == 0 else f"ft_class_counts_{number}")
