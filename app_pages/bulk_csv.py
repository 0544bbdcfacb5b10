"""Page "Bulk CSV": a CSV of product image URLs in, the same CSV with predicted categories out."""

from __future__ import annotations

import shutil

import pandas as pd
import plotly.express as px
import streamlit as st

from app_pages.common import (
    app_settings,
    background_jobs,
    job_fetch_options,
    label_sets_input,
    require_classifier,
)
from core.bulk.columns import SetColumns, result_columns
from core.bulk.csv_input import CsvInputError, inspect_csv, preview
from core.bulk.jobs import (
    JobFolder,
    JobSpec,
    JobState,
    default_batch_size,
    discard_unstarted,
    find_job,
    list_jobs,
    new_job_folder,
)
from core.bulk.retry import error_summary, retry_failed_rows
from core.bulk.review import (
    FIRST_SET,
    confidence_values,
    csv_bytes,
    for_display,
    gallery_rows,
    load_all_corrections,
    load_corrections,
    load_results,
    merge_corrections,
    parquet_bytes,
    review_queue,
    save_corrections,
    thumbnail_source,
    with_review,
)
from core.engine.classifier import ClipClassifier
from core.errors import UserError, plural, short_list
from core.fetch.examples import EXAMPLE_CSV, example_categories
from core.labels.label_set import LabelSet

JOB_KEY = "bulk_job_path"
UPLOAD_KEY = "bulk_upload_id"
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
    folder = new_job_folder(app_settings().data_dir, "example-products")
    shutil.copyfile(EXAMPLE_CSV, folder.input_path)
    categories = classifier.classes or tuple(example_categories())
    spec = JobSpec(
        input_csv=str(folder.input_path),
        url_column="image_url",
        label_sets=(LabelSet("category", tuple(categories)),),
        model=classifier.name,
        batch_size=default_batch_size(classifier.device.type),
    ).with_input_fingerprint()
    folder.write_spec(spec)
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
    settings = app_settings()
    reopen_from_address()
    source = st.radio("Input", [SOURCE_UPLOAD, SOURCE_EARLIER], horizontal=True, key="bulk_source")
    if source == SOURCE_UPLOAD:
        upload = st.file_uploader(
            "CSV of product image URLs (one row per product)", type=["csv"], key="bulk_upload"
        )
        if upload is None:
            return None
        if st.session_state.get(UPLOAD_KEY) != upload.file_id:
            if st.session_state.get(JOB_KEY):  # an upload replaced before Start leaves nothing
                discard_unstarted(JobFolder(st.session_state[JOB_KEY]))
            folder = new_job_folder(settings.data_dir, upload.name)
            folder.input_path.write_bytes(upload.getvalue())
            st.session_state[UPLOAD_KEY] = upload.file_id
            st.session_state[JOB_KEY] = str(folder.path)
    else:
        jobs = list_jobs(settings.data_dir)
        if not jobs:
            st.info("No earlier jobs yet: upload a CSV to start one.")
            return None
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
    path = st.session_state.get(JOB_KEY)
    if not path:
        return None
    folder = JobFolder(path)
    st.query_params["job"] = folder.id
    return folder


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
    own = classifier.classes
    if own:
        st.info(
            f"The model in use is a linear probe: it labels with its own {len(own)} classes "
            f"({short_list(own)})."
        )
        label_sets: tuple[LabelSet, ...] | None = (LabelSet("category", own),)
    else:
        label_sets = label_sets_input("bulk_sets")
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
    if st.button("Start labelling", type="primary", disabled=label_sets is None, key="bulk_start"):
        spec = JobSpec(
            input_csv=str(folder.input_path),
            url_column=url_column,
            label_sets=label_sets,
            model=classifier.name,
            top_k=int(top_k),
            batch_size=int(batch_size),
            workers=int(workers),
        ).with_input_fingerprint()
        folder.write_spec(spec)
        background_jobs().start(folder, classifier, job_fetch_options(classifier))
        st.rerun()


STOPPING = "bulk_stopping"  # ids of jobs whose Stop was pressed in this session


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
    classifier = job_classifier(spec, "resume")
    if classifier is None:
        return
    if st.button("Resume", type="primary", key="bulk_resume"):
        background_jobs().start(folder, classifier, job_fetch_options(classifier), resume=True)
        st.rerun()


def show_job(folder: JobFolder) -> None:
    """Progress while running; otherwise the outcome, results, review and downloads."""
    spec, state = folder.spec(), folder.state()
    names = ", ".join(f"{s.name} ({len(s.labels)})" for s in spec.label_sets)
    st.caption(f"Job {folder.id} · URL column '{spec.url_column}' · label sets: {names}")
    if background_jobs().is_running(folder):
        live_progress(folder)
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
        show_results(folder, spec, state)


def show_results(folder: JobFolder, spec: JobSpec, state: JobState) -> None:
    results = load_results(folder)
    st.subheader("Results")
    sets = result_columns(spec.label_sets)
    if len(sets) == 1:
        show_charts(results, sets[0], 0)
    else:
        tabs = st.tabs([c.name for c in sets])
        for index, (tab, columns) in enumerate(zip(tabs, sets, strict=True)):
            with tab:
                show_charts(results, columns, index)
    show_gallery(folder, spec, results)
    show_failures(folder, spec, results)
    show_review_and_downloads(folder, spec, results)


ALL_CATEGORIES = "All categories"


def review_grid(
    folder: JobFolder,
    spec: JobSpec,
    results: pd.DataFrame,
    chosen: tuple[LabelSet, SetColumns],
    threshold: float,
    limit: int,
    index: int,
) -> None:
    """One label set's least confident rows, whose category a person can correct."""
    label_set, columns = chosen
    stored = load_corrections(folder, columns.category)
    queue = review_queue(results, limit, columns.confidence)
    model_labels = results[columns.category]
    rows = queue["row"].tolist()
    view = pd.DataFrame(
        {
            "row": [r + 1 for r in rows],  # as a person counts: the first data row is 1
            "image": [thumbnail_source(u) for u in results[spec.url_column].iloc[rows]],
            "category": [stored.get(r, model_labels.iloc[r]) for r in rows],
            "model_category": model_labels.iloc[rows].tolist(),
            "confidence": queue["confidence"].tolist(),
            "needs_review": (queue["confidence"] < threshold).tolist(),
        }
    )
    suffix = "" if index == 0 else f"_{index}"
    edited = st.data_editor(
        view,
        key=f"review_{folder.id}{suffix}",
        hide_index=True,
        disabled=["row", "image", "model_category", "confidence", "needs_review"],
        column_config={
            "image": st.column_config.ImageColumn("image"),
            "category": st.column_config.SelectboxColumn(
                "category", options=list(label_set.labels), required=True
            ),
            "confidence": st.column_config.NumberColumn(format="%.3f"),
        },
    )
    shown = dict(zip(edited["row"] - 1, edited["category"], strict=True))
    corrections = merge_corrections(stored, shown, {r: model_labels.iloc[r] for r in rows})
    if corrections != stored:
        save_corrections(folder, corrections, columns.category)


def show_gallery(folder: JobFolder, spec: JobSpec, results: pd.DataFrame) -> None:
    """The labelled products as pictures, by category: filter, enlarge, correct."""
    st.subheader("Gallery by category")
    corrections = load_corrections(folder)
    counts = gallery_rows(results, corrections, spec.url_column)["category"].value_counts()
    left, middle, right = st.columns([2, 2, 1])
    chosen = left.selectbox(
        "Category",
        [ALL_CATEGORIES, *counts.index],
        format_func=lambda c: c if c == ALL_CATEGORIES else f"{c} ({counts[c]:,})",
        key="bulk_gallery_category",
    )
    low, high = middle.slider(
        "Confidence", 0.0, 1.0, (0.0, 1.0), 0.05, key="bulk_gallery_confidence"
    )
    shown = int(right.number_input("Show", 6, 600, 24, step=6, key="bulk_gallery_count"))
    category = None if chosen == ALL_CATEGORIES else chosen
    rows = gallery_rows(results, corrections, spec.url_column, category, (low, high))
    st.caption(f"{plural(len(rows), 'product')}; click Open to enlarge one and correct it.")
    grid = st.columns(6)
    for index, item in enumerate(rows.head(shown).itertuples(index=False)):
        with grid[index % 6]:
            source = thumbnail_source(item.image)
            if source:
                st.image(source, width="stretch")
            st.caption(f"{item.category} · {item.confidence:.0%}")
            if st.button("Open", key=f"bulk_gallery_open_{item.row}"):
                model_label = results["predicted_category"].iloc[item.row]
                enlarge(folder, spec, item._asdict(), model_label)


@st.dialog("Product", width="large")
def enlarge(folder: JobFolder, spec: JobSpec, item: dict, model_label: str) -> None:
    """One product large, with its category to correct."""
    source = thumbnail_source(item["image"])
    if source:
        st.image(source, width="stretch")
    st.caption(f"Row {item['row'] + 1} · confidence {item['confidence']:.1%} · {item['image']}")
    labels = list(spec.label_sets[0].labels)
    current = labels.index(item["category"]) if item["category"] in labels else 0
    key = f"bulk_gallery_fix_{item['row']}"  # one per product: no other product's choice
    chosen = st.selectbox("Category", labels, index=current, key=key)
    if st.button("Save", type="primary", key="bulk_gallery_save"):
        stored = load_corrections(folder)
        updated = merge_corrections(stored, {item["row"]: chosen}, {item["row"]: model_label})
        save_corrections(folder, updated)
        forget_review_edits(folder)
        st.rerun()


def forget_review_edits(folder: JobFolder) -> None:
    """Drop the review grids' pending edits: they are kept by position in the grid, and a
    correction made elsewhere or a retry changes which rows the grid holds."""
    for key in [k for k in st.session_state if str(k).startswith(f"review_{folder.id}")]:
        del st.session_state[key]


def show_charts(results: pd.DataFrame, columns: SetColumns, index: int) -> None:
    """Rows per category (every bar named; the chart grows with the labels) and confidence."""
    suffix = "" if index == 0 else f"_{index}"
    chart_counts, chart_confidence = st.columns(2)
    with chart_counts:
        counts = results[columns.category].replace("", "(failed)").value_counts()
        figure = px.bar(
            x=counts.values,
            y=counts.index,
            orientation="h",
            labels={"x": "rows", "y": "category"},
            title=f"Rows per category ({columns.name})",
        )
        figure.update_layout(
            yaxis={"autorange": "reversed", "dtick": 1, "automargin": True},
            height=120 + 24 * len(counts),
        )
        st.plotly_chart(figure, key=f"bulk_counts{suffix}")
    with chart_confidence:
        figure = px.histogram(
            confidence_values(results, columns.confidence).dropna(),
            nbins=20,
            range_x=[0, 1],
            title=f"Confidence ({columns.name})",
            labels={"value": "confidence"},
        )
        figure.update_layout(showlegend=False)
        st.plotly_chart(figure, key=f"bulk_confidence{suffix}")


def show_failures(folder: JobFolder, spec: JobSpec, results: pd.DataFrame) -> None:
    """Failed rows grouped by what went wrong, and a second try of just those rows."""
    summary = error_summary(results, spec.url_column)
    if summary.empty:
        return
    st.subheader(f"Failed rows ({int(summary['rows'].sum()):,})")
    st.dataframe(
        summary,
        hide_index=True,
        column_config={"example": st.column_config.TextColumn("example image", width="large")},
    )
    if st.button("Retry failed rows only", key="bulk_retry"):
        classifier = job_classifier(spec, "retry its failed rows")
        if classifier is None:
            return
        fetcher = retry_fetcher(classifier)
        try:
            with st.spinner("Fetching and labelling the failed rows again…"):
                outcome = retry_failed_rows(folder, classifier, fetcher)
        except UserError as exc:
            st.error(str(exc))
            return
        finally:
            fetcher.close()
        forget_review_edits(folder)
        st.toast(f"{outcome.fixed:,} of {outcome.retried:,} failed rows are labelled now.")
        st.rerun()


def retry_fetcher(classifier):  # type: ignore[no-untyped-def]
    """A downloader for a retry, configured as the job's own."""
    from core.fetch.download import ImageFetcher

    return ImageFetcher(job_fetch_options(classifier))


def show_review_and_downloads(folder: JobFolder, spec: JobSpec, results: pd.DataFrame) -> None:
    st.subheader("Review the least confident rows")
    threshold = st.slider(
        "Needs review below confidence", 0.0, 1.0, 0.5, 0.05, key="bulk_threshold"
    )
    limit = int(st.number_input("Rows to review", 10, 2000, 100, step=10, key="bulk_limit"))
    sets = list(zip(spec.label_sets, result_columns(spec.label_sets), strict=True))
    if len(sets) == 1:
        review_grid(folder, spec, results, sets[0], threshold, limit, 0)
    else:
        tabs = st.tabs([columns.name for _set, columns in sets])
        for index, (tab, chosen) in enumerate(zip(tabs, sets, strict=True)):
            with tab:
                review_grid(folder, spec, results, chosen, threshold, limit, index)
    everything = load_all_corrections(folder)
    corrections = everything.pop(FIRST_SET, {})
    st.caption(
        f"{plural(sum(map(len, [corrections, *everything.values()])), 'row')} corrected by hand."
    )
    labelled = with_review(results, corrections, threshold, everything)
    st.dataframe(for_display(labelled), hide_index=True, height=300)
    stem = f"{folder.id}-labelled"
    csv_column, parquet_column = st.columns(2)
    csv_column.download_button(
        "Download CSV",
        csv_bytes(labelled),
        file_name=f"{stem}.csv",
        mime="text/csv",
        key="bulk_download_csv",
    )
    parquet_column.download_button(
        "Download Parquet",
        parquet_bytes(labelled),
        file_name=f"{stem}.parquet",
        mime="application/octet-stream",
        key="bulk_download_parquet",
    )


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
