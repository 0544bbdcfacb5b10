"""`python -m core export-embeddings --job JOB --output DIR`: a job's stored image embeddings in
clip-retrieval's layout (DIR/img_emb/img_emb_0.npy, DIR/metadata/metadata_0.parquet), ready for
autofaiss or clip-retrieval to index."""

from __future__ import annotations

import argparse
import sys
import time

from core.cli.common import job_folder
from core.config import load_settings


def cmd_export_embeddings(args: argparse.Namespace) -> int:
    """Export the job's embeddings and their rows into --output."""
    from core.embeddings.export import EMBEDDINGS_FILE, METADATA_FILE, export_embeddings

    folder = job_folder(args.job, load_settings())
    state = folder.state()
    started = time.perf_counter()
    outcome = export_embeddings(
        folder.path, folder.results_path, args.output, state.rows_done if state else 0
    )
    seconds = time.perf_counter() - started
    print(
        f"Exported {outcome.exported:,} embeddings of {outcome.rows:,} rows ({outcome.dim} "
        f"values each, model '{outcome.model}') in {seconds:.1f} s -> "
        f"{args.output}/{EMBEDDINGS_FILE.as_posix()} and {args.output}/{METADATA_FILE.as_posix()}",
        file=sys.stderr,
    )
    return 0
