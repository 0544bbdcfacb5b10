"""The parts of the Bulk CSV page (app_pages/bulk_csv.py), one module per step of a job's life:

- job_picker: which job the session works on (a fresh upload, an earlier job, the example);
- label_choice: the label sets a job labels with (a linear probe's own classes, or the widgets');
- running: the process's background runner, live progress, Stop and Resume;
- results: charts, the gallery by category and the failed rows of a job that has run;
- review_panel: the review grids of the least confident rows and the downloads;
- relabel_panel: re-label with another label set from the kept image embeddings, the versions;
- version_diff: what changed between two versions, and the corrections a version kept or flagged;
- job_tools: the tabs Re-label, Search, Map and Duplicates of a job with kept image embeddings;
- search_panel, map_panel, duplicates_panel: search by text and "more like this", the 2-D map
  whose selection opens rows, near-duplicate groups and groups.csv;
- image_grid: a job's rows as thumbnails with Open (the gallery's correction) and More like this.

Streamlit code only; jobs themselves are run and read by core.bulk.
"""
