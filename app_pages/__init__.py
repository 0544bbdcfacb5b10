"""The Streamlit pages: one script per page (run by st.navigation in app.py, never imported),
the UI parts they share in widgets/, and each page's own parts in a package beside it (bulk/,
training/, label_editor/). UI only: the work is done by core/."""
