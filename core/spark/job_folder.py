"""A bulk job folder run on Spark: what the Bulk CSV page's *Run on Spark* starts.

The page makes an ordinary job folder (spec, uploaded input) and records the Spark master
beside it (`spark.json`); `python -m core classify --spark-job FOLDER`, in its own process,
labels the rows on Spark and then writes the folder's results exactly as a single-machine run
would have (results.csv, the stored image embeddings, a finished state). From then on the job is
like any other: its results, review, downloads, re-labelling, search, map and duplicates work
unchanged. While Spark runs, the state says how many of its tasks are done.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from typing import Any

from core.bulk.columns import OutputLayout
from core.bulk.csv_input import inspect_csv
from core.bulk.jobs import JobFolder, JobState, running_elsewhere
from core.config import Settings
from core.embeddings.store import EmbeddingWriter, ModelIdentity
from core.errors import UserError, plural
from core.spark.job import EMBEDDING, ROW_INDEX, confidence_columns
from core.spark.outputs import OutputPaths, csv_cell
from core.spark.session import PROJECT_ROOT

SPARK_FILE = "spark.json"
STOPPED = "Stopped before the end; nothing was written"
PARQUET = "spark.parquet"


def spark_master_of(folder: JobFolder) -> str | None:
    """The Spark master a job folder runs on, None for a single-machine job."""
    path = folder.path / SPARK_FILE
    if not path.is_file():
        return None
    return str(json.loads(path.read_text(encoding="utf-8")).get("master") or "") or None


def start_on_spark(folder: JobFolder, master: str) -> int:
    """Run the job folder on Spark in its own process (a new session: it outlives the page that
    started it); its state says it is running at once."""
    (folder.path / SPARK_FILE).write_text(json.dumps({"master": master}), encoding="utf-8")
    rows = inspect_csv(folder.spec().input_csv).rows
    log = open(folder.path / "spark.log", "ab")  # noqa: SIM115 - handed to the child process
    process = subprocess.Popen(
        [sys.executable, "-m", "core", "classify", "--spark-job", str(folder.path)],
        cwd=PROJECT_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    message = f"Starting Spark on {master}"
    folder.write_state(JobState(rows_total=rows, message=message, pid=process.pid))
    return process.pid


class SparkJobStopped(Exception):
    """The person stopped the job (its process got SIGTERM)."""


_STOP = threading.Event()  # set by SIGTERM: whatever error follows is the stop's doing


def _stop_requested(*_: object) -> None:
    _STOP.set()
    raise SparkJobStopped  # interrupts what Spark is doing (py4j may re-raise it as its own)


def stop_spark_job(folder: JobFolder) -> None:
    """Ask the process running the job on Spark to stop (it stops Spark, then ends)."""
    state = folder.state()
    if state is not None and state.pid and running_elsewhere(state):
        os.kill(state.pid, signal.SIGTERM)


def run_on_spark(folder: JobFolder, settings: Settings) -> JobState:
    """Label the folder's rows on its Spark master and write its results (the process that
    start_on_spark starts); a problem ends the job as failed, in one sentence; SIGTERM stops
    Spark and ends the job as stopped, with nothing written."""
    state = folder.state() or JobState()
    state.status, state.pid = "running", os.getpid()
    folder.write_state(state)
    previous = signal.signal(signal.SIGTERM, _stop_requested)
    try:
        return _run(folder, settings, state)
    except Exception as exc:
        if _STOP.is_set():
            state.status, state.message = "stopped", STOPPED
            folder.write_state(state)
            return state
        state.status = "failed"
        state.message = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
        folder.write_state(state)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(folder: JobFolder, settings: Settings, state: JobState) -> JobState:
    from core.engine.loading import load_named_model
    from core.spark.bulk_job import SparkBulkJob
    from core.spark.input_frame import read_input
    from core.spark.progress import watch_tasks
    from core.spark.session import require_pyspark, spark_session

    require_pyspark()
    spec, master = folder.spec(), spark_master_of(folder) or settings.spark_master
    started = time.perf_counter()
    classifier = load_named_model(spec.model, settings)

    def show(done: int, total: int) -> None:
        state.message = f"Labelling on Spark {master}: {done} of {plural(total, 'task')} done"
        folder.write_state(state)

    with spark_session(master) as spark, watch_tasks(spark.sparkContext, show):
        data = read_input(spark, spec.input_csv)
        state.rows_total = data.info.rows
        header = OutputLayout(spec.label_sets, spec.text_use.active).header(data.info.columns)
        kept = tuple(c for c in data.info.columns if c in header)
        job = SparkBulkJob(spark, spec, settings, classifier, allow_local_files=False)
        run = job.run(data.frame, kept, data.info.rows, OutputPaths(str(folder.path / PARQUET)))
        model = ModelIdentity(classifier.name, classifier.vision_digest, classifier.embedding_dim)
        rows = spark.read.parquet(str(folder.path / PARQUET)).orderBy(ROW_INDEX)
        write_results(folder, rows.toLocalIterator(prefetchPartitions=True), header, kept, model)
    shutil.rmtree(folder.path / PARQUET, ignore_errors=True)  # all of it is in the folder now
    seconds = time.perf_counter() - started
    state.status, state.rows_done, state.rows_failed = "finished", run.rows, run.failed
    state.results_bytes = folder.results_path.stat().st_size
    state.images_per_second, state.seconds_left = run.rows / max(seconds, 1e-9), 0.0
    state.message = f"Labelled on Spark {master} in {seconds:.0f} s"
    folder.write_state(state)
    return state


def write_results(
    folder: JobFolder,
    rows: Iterable[Any],
    header: list[str],
    kept: tuple[str, ...],
    model: ModelIdentity,
) -> None:
    """The Spark output's rows (in row_index order) as the job's results.csv and stored
    embeddings, as a single-machine run writes them."""
    numbers = set(confidence_columns(header[len(kept) :]))
    embeddings = EmbeddingWriter(folder.path, model, 0)
    with open(folder.results_path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for row in rows:
            values = row.asDict()
            writer.writerow([csv_cell(values[c], c in numbers, neutral=False) for c in header])
            embeddings.append(values[EMBEDDING])
    embeddings.close()
