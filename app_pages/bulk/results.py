"""What a bulk job produced, once it has run: rows per category and confidence charts (a tab per
label set), the gallery of products by category with a dialog to correct one, and the failed rows
with a second try of just those."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from app_pages.bulk.review_panel import forget_review_edits, show_review_and_downloads
from app_pages.bulk.running import job_classifier, job_fetch_options
from app_pages.bulk.text_choice import show_decided_by
from app_pages.bulk.tool_state import show_more_like
from core.bulk.columns import SetColumns, result_columns
from core.bulk.jobs import JobFolder, JobSpec
from core.bulk.retry import error_summary, retry_failed_rows
from core.bulk.review import (
    confidence_values,
    gallery_rows,
    load_corrections,
    load_results,
    merge_corrections,
    save_corrections,
    thumbnail_source,
)
from core.embeddings.store import read_meta
from core.engine.classifier import ClipClassifier
from core.errors import UserError, plural
from core.fetch.download import ImageFetcher

ALL_CATEGORIES = "All categories"


def show_results(folder: JobFolder, spec: JobSpec) -> None:
    """Charts, gallery, failed rows, review and downloads of a job that has rows done."""
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
    if spec.text_use.active:
        show_decided_by(results, spec)
    show_gallery(folder, spec, results)
    show_failures(folder, spec, results)
    show_review_and_downloads(folder, spec, results)


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
    searchable = read_meta(folder.path) is not None  # the Search tab shows look-alikes
    errors = results["error"] if "error" in results.columns else None
    for index, item in enumerate(rows.head(shown).itertuples(index=False)):
        image_error = str(errors.iloc[item.row]) if errors is not None else ""
        with grid[index % 6]:
            show_picture(item.image, image_error)
            st.caption(f"{item.category} · {item.confidence:.0%}")
            if st.button("Open", key=f"bulk_gallery_open_{item.row}"):
                model_label = results["predicted_category"].iloc[item.row]
                enlarge(folder, spec, {**item._asdict(), "error": image_error}, model_label)
            if searchable and not image_error:  # no image, nothing to look like
                st.button(
                    "More like this",
                    key=f"bulk_gallery_like_{item.row}",
                    on_click=show_more_like,
                    args=(folder.id, item.row),
                )


def show_picture(image: str, image_error: str = "") -> None:
    """A product's picture; for a row labelled from its text because its image failed, what
    went wrong instead of a broken picture."""
    if image_error:
        st.caption(f"No picture ({image_error}): labelled from its text.")
        return
    source = thumbnail_source(image)
    if source:
        st.image(source, width="stretch")


@st.dialog("Product", width="large")
def enlarge(folder: JobFolder, spec: JobSpec, item: dict, model_label: str) -> None:
    """One product large, with its category to correct."""
    show_picture(item["image"], item.get("error", ""))
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


def show_charts(results: pd.DataFrame, columns: SetColumns, index: int) -> None:
    """Rows per category (every bar named; the chart grows with the labels) and confidence."""
    suffix = "" if index == 0 else f"_{index}"
    chart_counts, chart_confidence = st.columns(2)
    with chart_counts:
        counts = results[columns.category].replace("", "(failed)").value_counts()
        bar_chart(counts, "category", f"Rows per category ({columns.name})", f"bulk_counts{suffix}")
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


def bar_chart(counts: pd.Series, axis: str, title: str, key: str) -> None:
    """Rows per name as horizontal bars, in the order given from the top, every bar named (the
    chart grows with the names)."""
    figure = px.bar(
        x=counts.values,
        y=counts.index,
        orientation="h",
        labels={"x": "rows", "y": axis},
        title=title,
    )
    figure.update_layout(
        yaxis={"autorange": "reversed", "dtick": 1, "automargin": True},
        height=max(260, 140 + 30 * len(counts)),  # room for a few bars with their names
    )
    st.plotly_chart(figure, key=key)


def show_failures(folder: JobFolder, spec: JobSpec, results: pd.DataFrame) -> None:
    """Failed rows grouped by what went wrong, and a second try of just those rows (with
    product text: the rows whose image failed, some perhaps labelled from their text)."""
    summary = error_summary(results, spec.url_column)
    if summary.empty:
        return
    if labels_from_text(spec):
        st.subheader(f"Rows whose image failed ({int(summary['rows'].sum()):,})")
        st.caption(
            "A row with product text is labelled from its text when its image fails, and keeps "
            "the image's error; a retry fetches the images again."
        )
    else:
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
        now = "have their image" if labels_from_text(spec) else "are labelled"
        st.toast(f"{outcome.fixed:,} of {outcome.retried:,} failed rows {now} now.")
        st.rerun()


def labels_from_text(spec: JobSpec) -> bool:
    """Whether a row whose image failed may have been labelled from its text."""
    return spec.text_use.active and spec.text_mode != "image"


def retry_fetcher(classifier: ClipClassifier) -> ImageFetcher:
    """A downloader for a retry, configured as the job's own."""
    return ImageFetcher(job_fetch_options(classifier))
