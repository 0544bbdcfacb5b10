"""`python -m core duplicates --job JOB --output groups.csv [--threshold T]`: groups of a job's
rows whose images are near-duplicates, found from the job's stored image embeddings alone (no
image is fetched and the model is never loaded). The file's columns: core/embeddings/groups_file.py.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from core.cli.common import CliError, job_folder
from core.config import load_settings
from core.errors import plural
from core.storage import atomic_write_bytes


def cmd_duplicates(args: argparse.Namespace) -> int:
    """Write the job's near-duplicate groups to --output; one summary line on stderr."""
    from core.embeddings.duplicates import near_duplicate_groups
    from core.embeddings.groups_file import groups_csv
    from core.embeddings.store import open_job_store

    if not 0.0 < args.threshold <= 1.0:
        raise CliError(f"--threshold must be above 0 and at most 1, not {args.threshold}.")
    folder = job_folder(args.job, load_settings())
    store = open_job_store(folder.path, "find its near-duplicates")
    state = folder.state()
    rows = state.rows_done if state else 0
    started = time.perf_counter()
    groups = near_duplicate_groups(store, args.threshold, stop=rows)
    text = groups_csv(groups, folder.results_path, folder.spec().url_column)
    atomic_write_bytes(Path(args.output), text.encode("utf-8"))
    grouped = sum(len(group.rows) for group in groups)
    print(
        f"Found {plural(len(groups), 'group')} of near-duplicate images "
        f"({plural(grouped, 'row')}) at similarity >= {args.threshold:g} among "
        f"{plural(rows, 'row')} in {time.perf_counter() - started:.1f} s -> {args.output}",
        file=sys.stderr,
    )
    return 0
