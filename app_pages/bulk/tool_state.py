"""Which of a job's tools is open (Re-label, Search, Map, Duplicates) and whose look-alikes the
Search tab shows: session state shared by the results gallery and the tools' panels."""

from __future__ import annotations

import streamlit as st

TOOL_TAB = "bulk_tool"  # the open tab of the job's tools: Re-label, Search, Map, Duplicates
SEARCH_TAB = "Search"
LIKE = "bulk_search_like"  # (job id, row) whose look-alikes the Search tab shows


def show_more_like(job_id: str, row: int) -> None:
    """Button callback: the Search tab shows the images most like row `row`."""
    st.session_state[LIKE] = (job_id, row)
    st.session_state[TOOL_TAB] = SEARCH_TAB
