"""What a finished or stopped job offers beyond its results, from the image embeddings kept with
it: tabs to re-label it, search its images, map them and find near-duplicates. Only the open
tab runs. A job labelled before embeddings were kept gets the re-label panel's explanation and
one sentence instead of the other tabs."""

from __future__ import annotations

import streamlit as st

from app_pages.bulk.duplicates_panel import show_duplicates_panel
from app_pages.bulk.map_panel import show_map_panel
from app_pages.bulk.relabel_panel import show_relabel_panel
from app_pages.bulk.search_panel import show_search_panel
from app_pages.bulk.tool_state import SEARCH_TAB, TOOL_TAB
from core.bulk.jobs import JobFolder, JobSpec, JobState
from core.embeddings.store import read_meta

NO_EMBEDDINGS = (
    "Search, the map and near-duplicates need those kept image embeddings too, so they appear "
    "once the job has run again."
)


def show_job_tools(folder: JobFolder, spec: JobSpec, state: JobState) -> None:
    """The tabs Re-label, Search, Map and Duplicates (only the open one is drawn)."""
    if read_meta(folder.path) is None:
        show_relabel_panel(folder, spec, state)
        st.info(NO_EMBEDDINGS)
        return
    panels = {
        "Re-label": show_relabel_panel,
        SEARCH_TAB: show_search_panel,
        "Map": show_map_panel,
        "Duplicates": show_duplicates_panel,
    }
    tabs = st.tabs(list(panels), key=TOOL_TAB, on_change="rerun")
    for tab, show in zip(tabs, panels.values(), strict=True):
        if tab.open:
            with tab:
                show(folder, spec, state)
