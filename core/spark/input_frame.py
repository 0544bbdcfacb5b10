"""A Spark job's input as a DataFrame of text columns with each row's place in the input.

Input is a CSV file or a Parquet file or folder at any path Spark can read (local, HDFS, S3 as
the cluster is configured). A local CSV is first checked exactly as a single-machine job checks
it (core/bulk/csv_input.py: its encoding, separator and shape), and Spark then reads it with that
encoding and separator; every column is read as text, missing cells as empty text.

`row_index` numbers the rows 0..n-1 in input order (files in name order, each file's rows in
order) without gathering them anywhere: each row's id within its file's chunk in its partition,
plus the number of rows in the chunks before it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from core.bulk.csv_input import CsvFormat, CsvInfo, CsvInputError, detect_url_column, inspect_csv
from core.spark.job import ROW_INDEX

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

_FILE, _PART, _ID = "__cliplab_file", "__cliplab_partition", "__cliplab_id"
_SPARK_ENCODINGS = {"utf-8-sig": "UTF-8", "latin-1": "ISO-8859-1", "utf-16": "UTF-16"}
_SAMPLE_ROWS = 200


@dataclass(frozen=True)
class SparkInput:
    """The input as Spark will read it, and what a job needs to know about it."""

    frame: DataFrame  # row_index, then the input's columns as text
    info: CsvInfo  # columns, row count, detected image column (and a local CSV's format)


def local_path(path: str) -> Path | None:
    """The local file a path names (plain or file: URL), None for other file systems."""
    parsed = urlparse(path)
    if parsed.scheme in ("", "file") or len(parsed.scheme) == 1:  # a Windows drive letter
        return Path(parsed.path if parsed.scheme == "file" else path)
    return None


def is_parquet(path: str) -> bool:
    """Whether the input is Parquet: a .parquet path, or a local folder holding Parquet files."""
    local = local_path(path)
    if local is not None and local.is_dir():
        return any(local.rglob("*.parquet"))
    return path.rstrip("/").lower().endswith(".parquet")


def read_input(spark: SparkSession, path: str) -> SparkInput:
    """The input at `path` with its row_index; CsvInputError (one sentence) when it cannot be
    used."""
    local = local_path(path)
    if local is not None and not local.exists():
        raise CsvInputError(f"Input '{path}' does not exist.")
    if is_parquet(path):
        frame, fmt = spark.read.parquet(path), CsvFormat("utf-8-sig", ",")
    elif local is not None and local.is_dir():
        raise CsvInputError(
            f"'{path}' is a folder without Parquet files; on Spark give a CSV or Parquet input "
            "(a folder of images runs on one machine, without --spark)."
        )
    else:
        fmt = inspect_csv(local).format if local is not None else CsvFormat("utf-8-sig", ",")
        frame = _read_csv(spark, path, fmt)
    frame = _as_text(frame)
    frame, rows = _with_row_index(frame)
    if rows == 0:
        raise CsvInputError(f"Input '{path}' has no rows.")
    columns = [c for c in frame.columns if c != ROW_INDEX]
    sample = frame.drop(ROW_INDEX).limit(_SAMPLE_ROWS).toPandas()
    info = CsvInfo(Path(path), columns, rows, detect_url_column(sample), fmt)
    return SparkInput(frame, info)


def _read_csv(spark: SparkSession, path: str, fmt: CsvFormat) -> DataFrame:
    """A CSV read as a single-machine job reads it: header, quoted fields over several lines,
    every value text."""
    return spark.read.csv(
        path,
        header=True,
        inferSchema=False,
        multiLine=True,
        escape='"',
        sep=fmt.delimiter,
        encoding=_SPARK_ENCODINGS.get(fmt.encoding, "UTF-8"),
        mode="PERMISSIVE",
    )


def _as_text(frame: DataFrame) -> DataFrame:
    """Every column as text (a byte-order mark off the first name), missing cells empty."""
    from pyspark.sql import functions as F

    names = [c.lstrip("\ufeff") if i == 0 else c for i, c in enumerate(frame.columns)]
    columns = [
        F.coalesce(F.col(f"`{c}`").cast("string"), F.lit("")).alias(name)
        for c, name in zip(frame.columns, names, strict=True)
        if name != ROW_INDEX
    ]
    return frame.select(*columns)


def _with_row_index(frame: DataFrame) -> tuple[DataFrame, int]:
    """`frame` with row_index first, and the number of rows. Input order is the files' in name
    order, each file's rows in order. Rows are counted per chunk (the rows of one file in one
    partition, whose ids are consecutive); each chunk's place follows from the chunks before
    it, so no row is moved to number them."""
    from pyspark.sql import functions as F

    tagged = (
        frame.withColumn(_FILE, F.input_file_name())
        .withColumn(_PART, F.spark_partition_id())
        .withColumn(_ID, F.monotonically_increasing_id())
    )
    chunks = tagged.groupBy(_FILE, _PART).agg(F.count("*").alias("rows"), F.min(_ID).alias("first"))
    shifts, total = [], 0
    for chunk in sorted(chunks.collect(), key=lambda c: (c[_FILE], c["first"])):
        shifts.append((chunk[_FILE], chunk[_PART], total - chunk["first"]))
        total += chunk["rows"]
    if not total:
        return frame.withColumn(ROW_INDEX, F.lit(0).cast("long")), 0
    shift = frame.sparkSession.createDataFrame(shifts, f"{_FILE} STRING, {_PART} INT, shift LONG")
    indexed = tagged.join(F.broadcast(shift), [_FILE, _PART])
    indexed = indexed.withColumn(ROW_INDEX, F.col(_ID) + F.col("shift"))
    return indexed.select(ROW_INDEX, *[f"`{c}`" for c in frame.columns]), total
