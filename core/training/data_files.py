"""Where the labelled CSVs a fine-tune trains on are kept: uploads and bulk jobs' corrected
results are written under CLIPLAB_DATA_DIR/finetune/uploads/, so a job folder can name its data
by path and the data outlives the browser session that chose it."""

from __future__ import annotations

import time
from pathlib import Path

from core.bulk.jobs import JobFolder
from core.bulk.review import REVIEW_FILE, corrected_results


def uploads_folder(data_dir: str | Path) -> Path:
    """The folder labelled CSVs are kept in (created when missing)."""
    folder = Path(data_dir) / "finetune" / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def keep_uploaded_csv(data_dir: str | Path, data: bytes, file_id: str) -> Path:
    """An uploaded labelled CSV written to the uploads folder under a time-stamped name."""
    path = uploads_folder(data_dir) / f"{time.strftime('%Y%m%d-%H%M%S')}-{file_id[:8]}.csv"
    path.write_bytes(data)
    return path


def results_version(job: JobFolder) -> str:
    """Changes whenever the job's results or its review corrections change."""
    sources = [job.results_path, job.path / REVIEW_FILE]
    return "-".join(str(p.stat().st_mtime_ns) for p in sources if p.exists())


def bulk_job_as_data(data_dir: str | Path, job: JobFolder, only_human: bool) -> tuple[Path, int]:
    """The job's results with corrections applied (only the rows a person labelled, with
    `only_human`), written as a labelled CSV; its path and row count."""
    path = uploads_folder(data_dir) / f"{job.id}{'-human' if only_human else ''}.csv"
    frame = corrected_results(job, only_human)
    frame.to_csv(path, index=False)
    return path, len(frame)
