"""CLIP Labeler's logic: everything the pages, the command line and the tests share.

Packages by stage, imported one way only (a package may import those above it in this list,
never those below; nothing in core imports Streamlit or app_pages):

- top level: `config` (settings), `errors` (user-facing messages), `storage` (atomic files),
  `spreadsheet_safety` (CSV cells that are safe to open in a spreadsheet);
- `labels`: label sets, their documents, import/export and the on-disk store;
- `engine`: the CLIP model (loading, image and text sides, scoring, caches, probe heads);
- `fetch`: images from URLs, files and the shipped examples, safely and within deadlines;
- `embeddings`: image embeddings stored beside a job's results, and what needs only them;
- `bulk`: CSV and folder jobs: input, job folders, the streaming pipeline, review, retries;
- `training`: linear probes and CLIP fine-tuning as background jobs, with metrics;
- `spark`: bulk labelling and fine-tuning on Apache Spark (optional pyspark);
- `api`: the HTTP API (FastAPI) over the same functions, for other programs;
- `cli`: `python -m core`, one module per command.

tests/test_layout.py enforces the order and the size limits.
"""
