"""The CLIPLAB_* settings as the pages read them, and the error boundary around drawing a page."""

from __future__ import annotations

import logging
from collections.abc import Callable

import streamlit as st

from core.config import Settings, SettingsError, load_settings

LOG = logging.getLogger("cliplab")


def run_safely(render: Callable[[], object]) -> None:
    """Run `render`; an unexpected error becomes a plain message on the page, never a traceback.

    The traceback goes to the server log for whoever runs the app. Streamlit's own st.stop and
    st.rerun are BaseExceptions, so they pass through untouched.
    """
    try:
        render()
    except Exception as exc:
        LOG.exception("Unexpected error while drawing the page")
        st.error(
            f"Something unexpected went wrong ({type(exc).__name__}). Nothing you entered is "
            "lost: try again, or tell whoever runs this app; the details are in its log."
        )


def app_settings() -> Settings:
    """The CLIPLAB_* settings; a bad value stops the page with a clear message."""
    try:
        return load_settings()
    except SettingsError as exc:
        st.error(f"Configuration problem: {exc}")
        st.stop()
