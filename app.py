"""CLIP Labeler: entry point. Navigation over app_pages/ and the sidebar model picker.

The pages live in app_pages/, not pages/: while a folder named pages/ exists, Streamlit runs a
page URL opened first after a server start as a legacy auto-discovered page, skipping this
script (no sidebar, no navigation), until some run reaches st.navigation.
"""

from __future__ import annotations

import streamlit as st

from app_pages.widgets.model_picker import sidebar_model_picker
from app_pages.widgets.settings import run_safely

st.set_page_config(page_title="CLIP Labeler", page_icon=":material/label:", layout="wide")

navigation = st.navigation(
    [
        st.Page(
            "app_pages/single_image.py",
            title="Single image",
            icon=":material/image_search:",
            default=True,
        ),
        st.Page("app_pages/bulk_csv.py", title="Bulk CSV", icon=":material/table_view:"),
        st.Page("app_pages/label_sets.py", title="Label sets", icon=":material/list_alt:"),
        st.Page("app_pages/finetune.py", title="Fine-tune", icon=":material/model_training:"),
    ]
)
st.sidebar.title("CLIP Labeler")
run_safely(sidebar_model_picker)
run_safely(navigation.run)
