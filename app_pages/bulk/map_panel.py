"""A 2-D map of a finished or stopped job's images, from the image embeddings kept with it (PCA,
a seeded sample when the job is large), coloured by category; selecting points with a box or a
lasso opens those rows below, to look at and correct. Needs no model."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from app_pages.bulk.image_grid import image_grid, job_items
from core.bulk.jobs import JobFolder, JobSpec, JobState
from core.embeddings.projection import DEFAULT_SAMPLE, Projection, project_2d
from core.embeddings.store import DATA_FILE, EmbeddingStore
from core.errors import clip_text, plural

CHART, SAMPLE = "bulk_map_chart", "bulk_map_sample"
SELECTED = "bulk_map_selected"  # (job id, the map as drawn, rows) of the last selection
MOST_SELECTED_SHOWN = 60


@st.cache_data(max_entries=4, show_spinner=False)
def projection(path: str, rows_done: int, sample: int, stamp: int) -> Projection:
    """The job's map (kept while the embeddings file, stamped by its change time, is the same)."""
    del stamp  # part of the cache key only
    return project_2d(EmbeddingStore(path), sample, seed=0, stop=rows_done)


def show_map_panel(folder: JobFolder, spec: JobSpec, state: JobState) -> None:
    """The map, how many images it shows, and the rows selected on it."""
    st.subheader("Map of the images")
    sample = int(
        st.number_input(
            "Images on the map, at most", 100, 50_000, DEFAULT_SAMPLE, 500, key=SAMPLE, width=220
        )
    )
    stamp = (folder.path / DATA_FILE).stat().st_mtime_ns
    mapped = projection(str(folder.path), state.rows_done, sample, stamp)
    labelled = max(state.rows_done - state.rows_failed, len(mapped.rows))
    if not len(mapped.rows):
        st.info("No image of this job has an embedding to map.")
        return
    items = job_items(folder, spec, mapped.rows.tolist())
    shown = (
        f"All {plural(len(items), 'labelled image')} are shown"
        if len(items) >= labelled
        else f"A random sample of {len(items):,} of the {labelled:,} labelled images is shown"
    )
    st.caption(
        f"{shown}. Images that look alike lie close together (the two axes keep "
        f"{sum(mapped.explained):.0%} of how the images differ). Hover over a point to see its "
        "row and image; drag a box or a lasso to open those rows below, double-click to clear."
    )
    event = st.plotly_chart(
        map_figure(mapped, items), key=CHART, on_select="rerun", selection_mode=("box", "lasso")
    )
    drawn = hash(tuple((item["row"], item["category"]) for item in items))
    show_selection(folder, spec, remembered(folder.id, drawn, selected_rows(event)))


def map_figure(mapped: Projection, items: list[dict]):  # noqa: ANN201 - a plotly Figure
    """The points coloured by category; a point carries its row, category and image reference
    (a mapped row missing from the results, which cannot happen in a sound job, is left out)."""
    found = {item["row"] for item in items}
    keep = [i for i, row in enumerate(mapped.rows.tolist()) if row in found]
    frame = pd.DataFrame(
        {
            "x": mapped.x[keep],
            "y": mapped.y[keep],
            "row": [item["row"] for item in items],
            "shown_row": [item["row"] + 1 for item in items],
            "category": [item["category"] for item in items],
            "image": [clip_text(item["image"], 90) for item in items],
        }
    )
    first, second = mapped.explained
    figure = px.scatter(
        frame,
        x="x",
        y="y",
        color="category",
        custom_data=["row", "shown_row", "category", "image"],
        labels={"x": f"axis 1 ({first:.0%})", "y": f"axis 2 ({second:.0%})"},
        height=600,
    )
    figure.update_traces(
        hovertemplate="Row %{customdata[1]} · %{customdata[2]}<br>%{customdata[3]}<extra></extra>",
        marker={"size": 7, "opacity": 0.8},
    )
    figure.update_layout(dragmode="select", legend_title_text="category")
    return figure


def selected_rows(event) -> list[int]:  # noqa: ANN001 - the chart's selection state
    """The job rows of the selected points, ascending."""
    points = (event or {}).get("selection", {}).get("points", [])
    return sorted({int(point["customdata"][0]) for point in points if point.get("customdata")})


def remembered(job_id: str, drawn: int, rows: list[int]) -> list[int]:
    """The rows selected on the map. A chart drawn anew (a correction recolours a point) comes
    back with no selection: the rows selected on the map as it was are kept then, until a new
    selection or Clear."""
    saved = st.session_state.get(SELECTED)
    if rows:
        st.session_state[SELECTED] = (job_id, drawn, rows)
        return rows
    if saved is not None and saved[0] == job_id and saved[1] != drawn:
        st.button("Clear the selection", key="bulk_map_clear", on_click=forget_selection)
        return saved[2]
    forget_selection()
    return []


def forget_selection() -> None:
    st.session_state.pop(SELECTED, None)


def show_selection(folder: JobFolder, spec: JobSpec, rows: list[int]) -> None:
    """The selected rows as pictures with their categories, each to open and correct."""
    if not rows:
        return
    st.markdown(f"**{plural(len(rows), 'image')} selected on the map**")
    if len(rows) > MOST_SELECTED_SHOWN:
        st.caption(f"The first {MOST_SELECTED_SHOWN} of them (by row) are shown.")
    items = job_items(folder, spec, rows[:MOST_SELECTED_SHOWN])
    for item in items:
        item["note"] = f"Row {item['row'] + 1} · {item['category']} · {item['confidence']:.0%}"
    image_grid(folder, spec, items, "bulk_map")
