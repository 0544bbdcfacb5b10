"""`python -m core classify --spark [MASTER] --input IN --labels LABELS --output OUT`: the bulk
job on Apache Spark (core/spark/), with the same labels, model, columns and answers as on one
machine; `--retry-failed PREVIOUS_OUT` labels again only the rows of an earlier output that
failed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING

from core.bulk.columns import OutputLayout
from core.bulk.jobs import JobSpec
from core.cli.bulk_options import default_device_batch_size, pick_url_column, text_use
from core.cli.common import (
    CliError,
    label_sets,
    load_model,
    progress_bar,
    refuse_truncation_twins,
)
from core.config import Settings
from core.engine.fusion import check_text_model
from core.errors import plural
from core.spark.session import MASTER_ENV, require_pyspark

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from core.engine.classifier import ClipClassifier
    from core.spark.bulk_job import SparkRun
    from core.spark.outputs import OutputPaths

_RETRY_KEEPS = ("--labels", "--model", "--url-column", "--text-column", "--template")


def cmd_classify_spark(args: argparse.Namespace, settings: Settings) -> int:
    """Label every row on Spark and write Parquet (and CSV); one summary line on stderr."""
    master = _master(args, settings)
    require_pyspark()
    _check_flags(args)
    from core.spark.bulk_job import SparkBulkJob
    from core.spark.outputs import OutputPaths, check_writable, read_job_record
    from core.spark.session import spark_session

    paths = OutputPaths.for_output(args.output)
    check_writable(paths, args.retry_failed)
    if args.retry_failed:
        with spark_session(master) as spark, _progress(spark):
            spec = JobSpec.from_dict(read_job_record(spark, args.retry_failed)["spec"])
            classifier = _checked_model(spec, settings)
            job = SparkBulkJob(spark, spec, settings, classifier, args.partitions)
            run = job.retry(args.retry_failed, paths)
    else:
        spec = _new_spec(args, settings)
        classifier = _checked_model(spec, settings)  # refusals come before Spark starts
        with spark_session(master) as spark, _progress(spark):
            run = _label_input(spark, args, spec, settings, classifier, paths)
    _summary(run, master)
    return 0


def _label_input(
    spark: SparkSession,
    args: argparse.Namespace,
    spec: JobSpec,
    settings: Settings,
    classifier: ClipClassifier,
    paths: OutputPaths,
) -> SparkRun:
    """Read --input, choose its image column, label every row."""
    from core.spark.bulk_job import SparkBulkJob
    from core.spark.input_frame import read_input

    data = read_input(spark, args.input)
    url_column = pick_url_column(data.info, args.url_column, spec.text_columns, f"'{args.input}'")
    spec = replace(spec, url_column=url_column)
    header = OutputLayout(spec.label_sets, spec.text_use.active).header(data.info.columns)
    kept = tuple(c for c in data.info.columns if c in header)
    job = SparkBulkJob(spark, spec, settings, classifier, args.partitions)
    return job.run(data.frame, kept, data.info.rows, paths)


@contextmanager
def _progress(spark: SparkSession) -> Iterator[None]:
    """A tqdm bar of the running stages' tasks (each a partition of rows)."""
    from core.spark.progress import watch_tasks

    with progress_bar("spark tasks", "task", None) as bar:

        def show(done: int, total: int) -> None:
            bar.total, bar.n = total, done
            bar.refresh()

        with watch_tasks(spark.sparkContext, show):
            yield


def cmd_spark_job(path: str, settings: Settings) -> int:
    """A job folder the Bulk CSV page made, run on its Spark master (in the background)."""
    from core.bulk.jobs import JobFolder
    from core.spark.job_folder import run_on_spark

    folder = JobFolder(path)
    if not folder.exists():
        raise CliError(f"'{path}' is not a bulk job folder.")
    state = run_on_spark(folder, settings)
    print(f"{state.message}: {plural(state.rows_done, 'row')}", file=sys.stderr)
    return 0


def _checked_model(spec: JobSpec, settings: Settings) -> ClipClassifier:
    """The job's model, once it is known to label the job's sets (and text) as asked."""
    classifier = load_model(spec.model, settings)
    refuse_truncation_twins(classifier, spec.label_sets)
    check_text_model(classifier, spec.text_use)
    return classifier


def _master(args: argparse.Namespace, settings: Settings) -> str:
    """--spark MASTER, else CLIPLAB_SPARK_MASTER (for --spark alone)."""
    if args.spark is None:
        raise CliError(
            "--retry-failed applies to Spark outputs; add --spark MASTER (a single-machine job "
            "continues with --resume)."
        )
    master = args.spark or settings.spark_master
    if not master:
        raise CliError(
            f"--spark needs a master (local[2], spark://host:7077, yarn...) or {MASTER_ENV}."
        )
    return master


def _check_flags(args: argparse.Namespace) -> None:
    """Refuse what a Spark job cannot do, in one sentence."""
    if args.resume:
        raise CliError(
            "--resume is for single-machine jobs; on Spark, run again, or label only the failed "
            "rows with --retry-failed PREVIOUS_OUT."
        )
    numbers = (args.batch_size, args.workers, args.top_k, args.partitions)
    if any(value is not None and value < 1 for value in numbers):
        raise CliError("--batch-size, --workers, --top-k and --partitions must be at least 1.")
    if args.retry_failed:
        given = [flag for flag in _RETRY_KEEPS if getattr(args, flag[2:].replace("-", "_"))]
        if given:
            raise CliError(
                "--retry-failed runs the previous job's own settings; leave out "
                f"{', '.join(given)}."
            )
    elif not args.input:
        raise CliError("--input must be given: a CSV or Parquet input Spark can read.")


def _new_spec(args: argparse.Namespace, settings: Settings) -> JobSpec:
    """The job's spec from the flags (its image column is chosen once the input is read)."""
    text = text_use(args)
    model = args.model or settings.model
    return JobSpec(
        input_csv=args.input,
        url_column="",
        label_sets=label_sets(args.labels, args.template, settings, model),
        model=model,
        top_k=args.top_k,
        batch_size=args.batch_size or default_device_batch_size(settings),
        workers=args.workers,
        text_columns=text.columns,
        text_mode=text.mode,
        text_weight=text.weight,
    )


def _summary(run: SparkRun, master: str) -> None:
    """What the job did, on stderr."""
    retried = f", {run.retried:,} retried" if run.retried else ""
    outputs = " and ".join(p for p in (run.paths.parquet, run.paths.csv) if p)
    workers = plural(len(set(run.worker_loads)), "worker process", "worker processes")
    print(
        f"Labelled {plural(run.rows, 'row')} ({run.failed:,} failed{retried}) on Spark "
        f"{master} in {run.seconds:.1f} s over {plural(run.partitions, 'partition')}; the model "
        f"loaded in {workers} -> {outputs}",
        file=sys.stderr,
    )
