"""The review of a bulk job's least confident rows (a grid per label set whose category a person
can correct, kept as the job's corrections) and the downloads of the labelled table."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.bulk.columns import TEXT_COLUMNS, SetColumns, result_columns
from core.bulk.jobs import JobFolder, JobSpec
from core.bulk.review import (
    csv_bytes,
    for_display,
    load_all_corrections,
    load_corrections,
    merge_corrections,
    parquet_bytes,
    review_corrections,
    review_queue,
    save_corrections,
    thumbnail_source,
    with_review,
)
from core.errors import plural
from core.labels.label_set import LabelSet


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
    sides = list(TEXT_COLUMNS[:2]) if index == 0 and spec.text_use.active else []
    for column in sides:  # what the image and the text alone said (the first set's)
        view.insert(len(view.columns) - 2, column, results[column].iloc[rows].tolist())
    suffix = "" if index == 0 else f"_{index}"
    edited = st.data_editor(
        view,
        key=f"review_{folder.id}{suffix}",
        hide_index=True,
        disabled=["row", "image", "model_category", *sides, "confidence", "needs_review"],
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


def forget_review_edits(folder: JobFolder) -> None:
    """Drop the review grids' pending edits: they are kept by position in the grid, and a
    correction made elsewhere or a retry changes which rows the grid holds."""
    for key in [k for k in st.session_state if str(k).startswith(f"review_{folder.id}")]:
        del st.session_state[key]


def show_review_and_downloads(folder: JobFolder, spec: JobSpec, results: pd.DataFrame) -> None:
    """The review grids, how many rows were corrected, the labelled table and its downloads."""
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
    corrected = sum(map(len, load_all_corrections(folder).values()))
    st.caption(f"{plural(corrected, 'row')} corrected by hand.")
    first, further = review_corrections(folder, spec.label_sets)
    labelled = with_review(results, first, threshold, further)
    st.dataframe(for_display(labelled), hide_index=True, height=300)
    stem = f"{folder.id}-labelled"
    downloads = [
        ("CSV", csv_bytes, "csv", "text/csv"),
        ("Parquet", parquet_bytes, "parquet", "application/octet-stream"),
    ]
    for column, (title, encode, suffix, mime) in zip(st.columns(2), downloads, strict=True):
        column.download_button(
            f"Download {title}",
            encode(labelled),
            file_name=f"{stem}.{suffix}",
            mime=mime,
            key=f"bulk_download_{suffix}",
        )
