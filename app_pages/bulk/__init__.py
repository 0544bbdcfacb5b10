"""The parts of the Bulk CSV page (app_pages/bulk_csv.py), one module per step of a job's life:

- job_picker: which job the session works on (a fresh upload, an earlier job, the example);
- running: the process's background runner, live progress, Stop and Resume;
- results: charts, the gallery by category and the failed rows of a job that has run;
- review_panel: the review grids of the least confident rows and the downloads.

Streamlit code only; jobs themselves are run and read by core.bulk.
"""
