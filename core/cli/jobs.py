"""`python -m core jobs [--json]`: the bulk jobs under CLIPLAB_DATA_DIR/jobs/ (the folders the
Bulk CSV page and `classify` use), newest first: status, rows, model, when created, and whether
the job has stored image embeddings. Reads only the job folders' small JSON files, so it never
imports torch and answers at once.
"""

from __future__ import annotations

import argparse
import json
import sys

from core.bulk.job_list import UNREADABLE, JobLine, job_line
from core.bulk.jobs import STATE_FILE, jobs_root, list_jobs
from core.cli.common import CliError
from core.config import load_settings
from core.errors import plural

NO_JOBS = (
    "No bulk jobs yet in {root}: start one with `python -m core classify --input IN.csv "
    "--labels LABELS --output OUT.csv` or on the web app's Bulk CSV page."
)
HEADER = ("id", "status", "rows", "failed", "embeddings", "created", "model")


def cmd_jobs(args: argparse.Namespace) -> int:
    """Print the bulk jobs, newest first, as a table or (--json) a JSON list."""
    data_dir = load_settings().data_dir
    root = jobs_root(data_dir)
    try:
        lines = [job_line(folder) for folder in list_jobs(data_dir)]
    except OSError as exc:
        raise CliError(f"Cannot read the jobs folder '{root}' ({exc.strerror or exc}).") from None
    if args.json:
        print(json.dumps([line.to_json() for line in lines], indent=2, ensure_ascii=False))
    elif not lines:
        print(NO_JOBS.format(root=root))
    else:
        print(format_table(lines))
    damaged = sum(line.status == UNREADABLE for line in lines)
    if damaged:
        print(
            f"note: the {STATE_FILE} of {plural(damaged, 'job')} could not be read (damaged or "
            f"not written by this app); shown as {UNREADABLE}.",
            file=sys.stderr,
        )
    return 0


def format_table(lines: list[JobLine]) -> str:
    """A plain table with a header, each column as wide as its widest cell."""
    rows = [HEADER, *(line.cells() for line in lines)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )
