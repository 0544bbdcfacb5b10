"""Rows of a bulk job shown as pictures, for the search, the map and the near-duplicates: each
row's image, category (a person's correction when there is one) and confidence read from the
results, and a grid of thumbnails whose Open button is the gallery's correction dialog and whose
"More like this" turns the Search tab to the images most like that one."""

from __future__ import annotations

import math
from collections.abc import Iterable

import streamlit as st

from app_pages.bulk.results import enlarge
from app_pages.bulk.tool_state import show_more_like
from core.bulk.jobs import JobFolder, JobSpec
from core.bulk.review import load_corrections, thumbnail_source
from core.embeddings.search import result_rows


def job_items(folder: JobFolder, spec: JobSpec, rows: Iterable[int]) -> list[dict]:
    """Each of `rows` (0-based) that the results hold, in the order given, as `row`, `image`,
    `category` (corrected), `model_category` and `confidence` (NaN for a failed row)."""
    rows = list(rows)
    cells = result_rows(folder.results_path, rows)
    corrections = load_corrections(folder)
    items = []
    for row in rows:
        found = cells.get(row)
        if found is None:
            continue
        model = found.get("predicted_category", "")
        confidence = found.get("confidence", "")
        items.append(
            {
                "row": row,
                "image": found.get(spec.url_column, ""),
                "category": corrections.get(row, model) if model else model,
                "model_category": model,
                "confidence": float(confidence) if confidence else math.nan,
            }
        )
    return items


def image_grid(
    folder: JobFolder,
    spec: JobSpec,
    items: list[dict],
    key: str,
    like: bool = True,
    columns: int = 6,
) -> None:
    """`items` as thumbnails, each with its `note` (or row and category) beneath, an Open button
    (enlarge and correct it) and, with `like`, "More like this"; button keys start with `key`."""
    grid = st.columns(columns)
    for index, item in enumerate(items):
        row = item["row"]
        with grid[index % columns]:
            source = thumbnail_source(item["image"])
            if source:
                st.image(source, width="stretch")
            else:
                st.caption("(no preview for a local file)")
            st.caption(item.get("note") or f"Row {row + 1} · {item['category']}")
            if st.button("Open", key=f"{key}_open_{row}", help="Enlarge it and correct it."):
                enlarge(folder, spec, item, item["model_category"])
            if like:
                st.button(
                    "More like this",
                    key=f"{key}_like_{row}",
                    on_click=show_more_like,
                    args=(folder.id, row),
                    help="The images of this job that look most like this one.",
                )
