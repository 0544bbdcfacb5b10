"""A CSV dropped on a page, kept once: Streamlit hands the same upload to every rerun of the
page, so the file is stored only when a new one is dropped."""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st
from streamlit.runtime.uploaded_file_manager import UploadedFile


def csv_upload(label: str, key: str, keep: Callable[[UploadedFile], None]) -> UploadedFile | None:
    """The CSV in the uploader `key`, None when there is none. `keep` stores a newly dropped
    file; the id of the file kept is remembered in session state under `{key}_id`."""
    upload = st.file_uploader(label, type=["csv"], key=key)
    if upload is not None and st.session_state.get(f"{key}_id") != upload.file_id:
        keep(upload)
        st.session_state[f"{key}_id"] = upload.file_id
    return upload
