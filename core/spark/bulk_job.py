"""A bulk job on Spark, driver side: the label texts encoded once here and broadcast, the rows
spread over partitions in input order, each partition labelled by a worker
(core/spark/worker.py), the result written as Parquet (and a single CSV when asked for).

`--retry-failed` reads a previous output, labels again only its rows without a category, and
writes them merged back in place of the failed ones.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING

from core.bulk.columns import OUTPUT_COLUMNS
from core.bulk.jobs import JobSpec
from core.config import Settings
from core.engine.classifier import ClipClassifier
from core.engine.text_side import label_texts
from core.labels.label_set import LabelSet
from core.spark.job import ROW_INDEX, LabelEmbeddings, PidList, SparkLabelJob
from core.spark.outputs import OutputPaths, read_job_record, write_outputs
from core.spark.session import is_local
from core.spark.worker import label_partition

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

ROWS_PER_PARTITION = 5_000
_CATEGORY = OUTPUT_COLUMNS[0]


@dataclass(frozen=True)
class SparkRun:
    """What a finished Spark job did."""

    rows: int
    failed: int
    retried: int  # rows labelled again (--retry-failed), else 0
    partitions: int
    worker_loads: list[int]  # the pid of each worker process that loaded the model
    seconds: float
    paths: OutputPaths


def label_embeddings(
    classifier: ClipClassifier, label_sets: tuple[LabelSet, ...]
) -> LabelEmbeddings:
    """Each zero-shot label set's embeddings, encoded once here for every worker (a trained
    model's heads need none)."""
    if classifier.probe is not None:
        return []
    encoded = []
    for label_set in label_sets:
        texts = label_texts(label_set.labels, label_set.prompts or None)
        embeddings = classifier.encode_labels(texts, label_set.templates)
        encoded.append((tuple(texts), tuple(label_set.templates), embeddings.numpy()))
    return encoded


class SparkBulkJob:
    """Labels a DataFrame of input rows (row_index + text columns) with a job spec."""

    def __init__(
        self,
        spark: SparkSession,
        spec: JobSpec,
        settings: Settings,
        classifier: ClipClassifier,
        partitions: int | None = None,
        allow_local_files: bool = True,
    ) -> None:
        """`allow_local_files`: whether the image column may name files (the command line's
        jobs) or only URLs (the web page's)."""
        self.spark, self.spec, self.partitions = spark, spec, partitions
        self.allow_local_files = allow_local_files
        context = spark.sparkContext
        if is_local(context.master):
            settings = replace(settings, data_dir=settings.data_dir.resolve())
        self.settings = replace(settings, api_keys=())  # workers never need the API's keys
        self.embeddings = context.broadcast(label_embeddings(classifier, spec.label_sets))
        self.threads = int(context.getConf().get("spark.task.cpus", "1"))

    def label(
        self, rows: DataFrame, kept: tuple[str, ...], count: int
    ) -> tuple[DataFrame, SparkLabelJob, int]:
        """`rows` labelled, range-partitioned by row_index (each partition in order); with the
        job the workers ran and the number of partitions."""
        context = self.spark.sparkContext
        job = SparkLabelJob(
            self.spec,
            self.settings,
            kept,
            self.embeddings,
            context.accumulator([], PidList()),
            self.threads,
            self.allow_local_files,
        )
        partitions = self.partitions or max(
            2 * context.defaultParallelism, math.ceil(count / ROWS_PER_PARTITION)
        )
        spread = rows.repartitionByRange(partitions, ROW_INDEX)
        labelled = spread.mapInPandas(partial(label_partition, job=job), job.spark_schema())
        return labelled.sortWithinPartitions(ROW_INDEX), job, partitions

    def run(
        self, rows: DataFrame, kept: tuple[str, ...], count: int, paths: OutputPaths
    ) -> SparkRun:
        """Label every row and write the outputs."""
        started = time.perf_counter()
        labelled, job, partitions = self.label(rows, kept, count)
        failed = write_outputs(self.spark, labelled, paths, self.spec, kept, job.columns)
        seconds = time.perf_counter() - started
        return SparkRun(count, failed, 0, partitions, list(job.loads.value), seconds, paths)

    def retry(self, previous: str, paths: OutputPaths) -> SparkRun:
        """Label again the rows of `previous` (an output of this job) that have no category,
        and write all rows with those merged back."""
        from pyspark.sql import functions as F

        started = time.perf_counter()
        record = read_job_record(self.spark, previous)
        kept = tuple(record["kept"])
        done = self.spark.read.parquet(previous)
        failed_rows = (F.col(_CATEGORY).isNull()) | (F.col(_CATEGORY) == "")
        to_retry = done.filter(failed_rows).select(ROW_INDEX, *[f"`{c}`" for c in kept])
        retried = to_retry.count()
        relabelled, job, partitions = self.label(to_retry, kept, retried)
        merged = done.filter(~failed_rows).unionByName(relabelled)
        merged = merged.repartitionByRange(partitions, ROW_INDEX).sortWithinPartitions(ROW_INDEX)
        failed = write_outputs(self.spark, merged, paths, self.spec, kept, job.columns)
        return SparkRun(
            int(record["rows"]),
            failed,
            retried,
            partitions,
            list(job.loads.value),
            time.perf_counter() - started,
            paths,
        )
