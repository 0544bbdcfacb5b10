"""`python -m core relabel --job JOB --labels L [--labels L2 ...] --output OUT.csv`: a job's rows
labelled again with other label sets from its stored image embeddings, fetching no image; the
output has the columns `classify` would give (the model's labels, as classify writes them), and
is kept as a new version of the job, with its review corrections carried over."""

from __future__ import annotations

import argparse
import sys
import time

from core.cli.common import job_folder, label_sets, load_model, refuse_truncation_twins
from core.config import load_settings
from core.spreadsheet_safety import copy_csv_neutralised


def cmd_relabel(args: argparse.Namespace) -> int:
    """Re-label the job's rows with --labels into --output."""
    from core.bulk.versions import create_version

    settings = load_settings()
    folder = job_folder(args.job, settings)
    model = args.model or folder.spec().model
    sets = label_sets(args.labels, args.template, settings, model)
    classifier = load_model(model, settings)
    refuse_truncation_twins(classifier, sets)
    started = time.perf_counter()
    version = create_version(folder, classifier, sets, args.top_k)
    copy_csv_neutralised(version.folder.results_path, args.output)
    seconds = time.perf_counter() - started
    print(
        f"Re-labelled {version.rows:,} rows ({version.failed:,} failed) from stored embeddings "
        f"in {seconds:.1f} s -> {args.output} (version {version.number} of the job)",
        file=sys.stderr,
    )
    return 0
