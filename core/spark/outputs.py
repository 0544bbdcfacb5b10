"""Where a Spark job's output goes and how: a Parquet folder (every output column, row_index and
the image embeddings), a record of the job inside it (`_cliplab_job/`, one line of JSON written
through Spark, so it works on any file system Spark writes to; Spark's readers skip names that
start with an underscore), and, when the output is named *.csv, a single CSV with the
single-machine job's columns and cells, in input order.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from core.bulk.columns import OUTPUT_COLUMNS
from core.bulk.jobs import JobSpec
from core.errors import UserError
from core.spark.input_frame import local_path
from core.spark.job import EMBEDDING, ROW_INDEX, confidence_columns
from core.spreadsheet_safety import neutralise

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

JOB_RECORD = "_cliplab_job"


class SparkOutputError(UserError, ValueError):
    """The output cannot be written or read as asked; the message says why."""


@dataclass(frozen=True)
class OutputPaths:
    """The Parquet folder, and the single CSV when one was asked for."""

    parquet: str
    csv: str | None = None

    @classmethod
    def for_output(cls, output: str) -> OutputPaths:
        """OUT.csv: a Parquet folder OUT.parquet beside the CSV OUT.csv; anything else: the
        Parquet folder OUT."""
        if output.lower().endswith(".csv"):
            return cls(output[: -len(".csv")] + ".parquet", output)
        return cls(output)


def check_writable(paths: OutputPaths, previous: str | None = None) -> None:
    """Refuse to overwrite anything but an earlier output of this tool, or the output being
    retried."""
    folder = local_path(paths.parquet)
    if previous is not None and local_path(previous) == folder:
        raise SparkOutputError(
            "--retry-failed needs another --output than the output it retries; the merged rows "
            "go to the new one."
        )
    if folder is None or not folder.exists():
        return
    ours = (folder / JOB_RECORD).is_dir() or (folder.is_dir() and not any(folder.iterdir()))
    if not ours:
        raise SparkOutputError(
            f"'{paths.parquet}' exists and is not an output of this tool; choose another --output."
        )


def read_job_record(spark: SparkSession, previous: str) -> dict:
    """The record of the job that wrote `previous` (SparkOutputError when there is none)."""
    local = local_path(previous)
    if local is not None and not (local / JOB_RECORD).is_dir():
        raise SparkOutputError(
            f"'{previous}' is not an output of `classify --spark` (no {JOB_RECORD} in it); give "
            "the Parquet folder a Spark job wrote."
        )
    lines = spark.read.text(f"{previous.rstrip('/')}/{JOB_RECORD}").collect()
    return json.loads(lines[0].value)


def _write_job_record(spark: SparkSession, parquet: str, record: dict) -> None:
    """The job's record inside its output folder, as one line of text."""
    line = spark.createDataFrame([(json.dumps(record),)], "value STRING")
    line.coalesce(1).write.mode("overwrite").text(f"{parquet.rstrip('/')}/{JOB_RECORD}")


def write_outputs(
    spark: SparkSession,
    labelled: DataFrame,
    paths: OutputPaths,
    spec: JobSpec,
    kept: tuple[str, ...],
    columns: list[str],
) -> int:
    """Write the Parquet folder, its record and the CSV; returns the rows without a category."""
    from pyspark.sql import functions as F

    labelled.write.mode("overwrite").parquet(paths.parquet)
    written = spark.read.parquet(paths.parquet)
    category = F.col(OUTPUT_COLUMNS[0])
    rows = written.count()
    failed = written.filter(category.isNull() | (category == "")).count()
    record = {"spec": spec.to_dict(), "kept": list(kept), "rows": rows, "failed": failed}
    _write_job_record(spark, paths.parquet, record)
    if paths.csv is not None:
        table = [c for c in columns if c not in (ROW_INDEX, EMBEDDING)]
        numbers = confidence_columns(table[len(kept) :])
        ordered = written.orderBy(ROW_INDEX).select(*[f"`{c}`" for c in table])
        write_csv(ordered.toLocalIterator(prefetchPartitions=True), table, numbers, paths.csv)
    return failed


def write_csv(rows: Iterable, columns: list[str], number_columns: list[str], target: str) -> None:
    """The rows as the single-machine job's CSV: same header and cells, confidences (the
    `number_columns`) with four decimals, every cell safe to open in a spreadsheet; written
    atomically."""
    numbers = {columns.index(c) for c in number_columns}
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow([neutralise(c) for c in columns])
            for row in rows:
                writer.writerow([csv_cell(value, i in numbers) for i, value in enumerate(row)])
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def csv_cell(value: object, number: bool, neutral: bool = True) -> str:
    """One cell as the single-machine job writes it: a confidence with four decimals, text
    made safe for spreadsheets (`neutral`: as `classify` delivers it; off: as a job folder's
    results.csv holds it)."""
    if value is None:
        return ""
    if number:
        return f"{value:.4f}"
    return neutralise(str(value)) if neutral else str(value)
