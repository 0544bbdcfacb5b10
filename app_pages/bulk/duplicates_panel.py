"""Near-duplicate images of a finished or stopped job, found from the image embeddings kept with
it (no model, nothing downloaded): groups shown as rows of thumbnails with their similarity, and
groups.csv to download, as `python -m core duplicates` writes it."""

from __future__ import annotations

import time

import streamlit as st

from app_pages.bulk.image_grid import image_grid, job_items
from core.bulk.jobs import JobFolder, JobSpec, JobState
from core.embeddings.duplicates import DuplicateGroup, near_duplicate_groups
from core.embeddings.groups_file import DEFAULT_THRESHOLD, groups_csv
from core.embeddings.store import EmbeddingStore
from core.errors import plural

FOUND = "bulk_dup_found"  # (job id, threshold, groups, seconds) of the last search
MOST_GROUPS_SHOWN, PER_ROW = 30, 6


def show_duplicates_panel(folder: JobFolder, spec: JobSpec, state: JobState) -> None:
    """The threshold, the button, and the groups found."""
    st.subheader("Near-duplicate images")
    st.caption(
        "Groups of images that look the same to the model: copies, resized or re-encoded "
        "pictures. Raise the similarity to keep only exact copies; lower it to catch crops and "
        "variants."
    )
    threshold = st.slider(
        "Similarity at least",
        0.80,
        1.00,
        DEFAULT_THRESHOLD,
        0.001,
        format="%.3f",
        key="bulk_dup_threshold",
        width=420,
    )
    if st.button("Find near-duplicates", type="primary", key="bulk_dup_find"):
        started = time.perf_counter()
        with st.spinner("Comparing the images' embeddings…"):
            groups = near_duplicate_groups(
                EmbeddingStore(folder.path), threshold, stop=state.rows_done
            )
        seconds = time.perf_counter() - started
        st.session_state[FOUND] = (folder.id, threshold, groups, seconds)
    found = st.session_state.get(FOUND)
    if found is not None and found[0] == folder.id:
        show_groups(folder, spec, state, *found[1:])


def show_groups(
    folder: JobFolder,
    spec: JobSpec,
    state: JobState,
    threshold: float,
    groups: list[DuplicateGroup],
    seconds: float,
) -> None:
    """How many groups and rows, the download, then each group as a row of thumbnails."""
    rows = sum(len(group.rows) for group in groups)
    st.markdown(
        f"**{plural(len(groups), 'group')} of near-duplicate images ({plural(rows, 'row')})** "
        f"at similarity ≥ {threshold:.3f} among {plural(state.rows_done, 'row')}, found in "
        f"{seconds:.1f} s."
    )
    if not groups:
        return
    st.download_button(
        "Download groups.csv",
        data=lambda: groups_csv(groups, folder.results_path, spec.url_column).encode("utf-8"),
        file_name=f"{folder.id}-duplicates.csv",
        mime="text/csv",
        key="bulk_dup_download",
        on_click="ignore",
        help="One line per grouped row: group, row_index, image, category, similarity (as "
        "`python -m core duplicates` writes it).",
    )
    if len(groups) > MOST_GROUPS_SHOWN:
        st.caption(f"The {MOST_GROUPS_SHOWN} largest groups are shown; the download has them all.")
    for number, group in enumerate(groups[:MOST_GROUPS_SHOWN], start=1):
        show_group(folder, spec, number, group)


def show_group(folder: JobFolder, spec: JobSpec, number: int, group: DuplicateGroup) -> None:
    """One group: its size, then its first images with their similarity to the first."""
    size = len(group.rows)
    more = f" (the first {PER_ROW} are shown)" if size > PER_ROW else ""
    st.markdown(f"Group {number} · {plural(size, 'image')}{more}")
    similarity = dict(zip(group.rows.tolist(), group.similarity.tolist(), strict=True))
    items = job_items(folder, spec, group.rows[:PER_ROW].tolist())
    for item in items:
        item["note"] = (
            f"Row {item['row'] + 1} · {item['category']} · similarity {similarity[item['row']]:.3f}"
        )
    image_grid(folder, spec, items, f"bulk_dup_{number}", like=False, columns=PER_ROW)
