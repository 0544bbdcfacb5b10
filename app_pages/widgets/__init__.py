"""UI pieces shared by app.py and several pages, one module per topic:

- settings: the CLIPLAB_* settings as the pages read them, and the error boundary (run_safely);
- model_picker: the cached models, the sidebar's model picker and the page-side getters of the
  loaded model;
- images: the image input (a pasted URL, a dropped file or an example) and its shared downloader;
- labels: the saved label sets and the widgets that pick or type label sets;
- uploads: a dropped CSV, stored once per file rather than on every rerun;
- prediction: how one image's prediction is shown (top-5 chart, scores table).

Streamlit code only; the work itself is done by core/. Parts used by one page only live in that
page's own package (bulk/, training/, label_editor/).
"""
