"""CLIP Labeler: entry point. Navigation over pages/ and the sidebar model picker."""

from __future__ import annotations

import streamlit as st

from pages.common import run_safely, sidebar_model_picker

st.set_page_config(page_title="CLIP Labeler", page_icon=":material/label:", layout="wide")

navigation = st.navigation(
    [
        st.Page(
            "pages/single_image.py",
            title="Single image",
            icon=":material/image_search:",
            default=True,
        ),
        st.Page("pages/bulk_csv.py", title="Bulk CSV", icon=":material/table_view:"),
    ]
)
st.sidebar.title("CLIP Labeler")
run_safely(sidebar_model_picker)
run_safely(navigation.run)
