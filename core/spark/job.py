"""What a Spark bulk job ships to its workers, and the shape of what they send back.

The driver checks everything and encodes the label texts once; a SparkLabelJob carries the
job's JobSpec (the same as a single-machine job's), the settings workers load the model with,
the input columns kept in the output, the label embeddings (broadcast, so each executor gets
them once) and an accumulator in which each worker process that loads the model records its
pid.

Output columns: `row_index` (the row's place in the input, from 0), the single-machine job's
columns in the same order (the input's, then predicted_category, confidence, ...), and
`embedding` (the image's stored embedding; null when the image failed). Confidences are numbers
in Parquet and written with four decimals in CSV, as on one machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from core.bulk.columns import OutputLayout
from core.bulk.jobs import JobSpec
from core.config import Settings

ROW_INDEX = "row_index"
EMBEDDING = "embedding"
LabelEmbeddings = list[tuple[tuple[str, ...], tuple[str, ...], np.ndarray]]


@dataclass(frozen=True)
class SparkLabelJob:
    """A bulk job as every partition runs it."""

    spec: JobSpec
    settings: Settings
    kept: tuple[str, ...]  # input columns copied into the output, in order
    label_embeddings: Any  # Broadcast[LabelEmbeddings]: the driver's encoding of the labels
    loads: Any  # Accumulator[list[int]]: the pid of each worker process that loaded the model
    threads: int = 1  # torch threads per worker (spark.task.cpus)
    allow_local_files: bool = True  # the command line reads paths too; a page's job never

    @property
    def layout(self) -> OutputLayout:
        return OutputLayout(self.spec.label_sets, self.spec.text_use.active)

    @property
    def added(self) -> list[str]:
        """The columns the job adds after the kept input columns."""
        return self.layout.added()

    @property
    def columns(self) -> list[str]:
        """Every output column, in order."""
        return [ROW_INDEX, *self.kept, *self.added, EMBEDDING]

    def spark_schema(self) -> Any:
        """The output's schema (a pyspark StructType; any column name works)."""
        from pyspark.sql.types import (
            ArrayType,
            DoubleType,
            FloatType,
            LongType,
            StringType,
            StructField,
            StructType,
        )

        numbers = set(confidence_columns(self.added))
        fields = [StructField(ROW_INDEX, LongType(), False)]
        fields += [StructField(c, StringType()) for c in self.kept]
        fields += [
            StructField(c, DoubleType() if c in numbers else StringType()) for c in self.added
        ]
        fields.append(StructField(EMBEDDING, ArrayType(FloatType())))
        return StructType(fields)


def confidence_columns(columns: list[str]) -> list[str]:
    """The added columns that hold a confidence (0..1): numbers in Parquet."""
    return [c for c in columns if c == "confidence" or c.endswith("_confidence")]



class PidList:
    """An accumulator's parameter: the pids that workers report, concatenated (pyspark takes any
    object with these two methods)."""

    def zero(self, value: list[int]) -> list[int]:
        return []

    def addInPlace(self, first: list[int], second: list[int]) -> list[int]:  # noqa: N802
        return first + second
