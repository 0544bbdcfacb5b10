"""What runs inside each executor's Python worker: the model, loaded once per worker process and
kept for every partition it labels (Spark reuses its Python workers), and the labelling of one
partition by the bulk job's own RowStream.

The model cache lives in this importable module on purpose: a cache defined in the driver's
__main__ would be pickled with each task and load the model again every time.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.bulk.row_labels import RowOutput, job_scorers
from core.bulk.row_stream import Labelled, RowStream
from core.engine.classifier import ClipClassifier
from core.engine.trained_models import resolve_model
from core.fetch.download import FetchOptions, ImageFetcher
from core.spark.job import EMBEDDING, ROW_INDEX, SparkLabelJob, confidence_columns

if TYPE_CHECKING:
    import pandas as pd

_MODELS: dict[tuple, ClipClassifier] = {}
_ROWS_PER_FRAME = 256  # rows handed back to Spark at a time


def _model_key(job: SparkLabelJob) -> tuple:
    """What identifies a loaded model: its name, where it is read from and when that last
    changed (a model trained again under the same name is loaded again), and how it runs."""
    settings = job.settings
    source = resolve_model(job.spec.model, settings.data_dir)
    path = Path(source)
    stamp = max((p.stat().st_mtime for p in path.glob("*") if p.is_file()), default=0.0)
    return job.spec.model, source, stamp, settings.device, settings.precision


def worker_classifier(job: SparkLabelJob) -> ClipClassifier:
    """This worker's model for `job` (loaded on first use, then reused), holding the label
    embeddings the driver encoded."""
    import torch

    from core.engine.loading import load_named_model

    key = _model_key(job)
    classifier = _MODELS.get(key)
    if classifier is None:
        torch.set_num_threads(job.threads)
        classifier = load_named_model(job.spec.model, job.settings)
        _MODELS.clear()  # one model per worker: a new one replaces the last
        _MODELS[key] = classifier
        job.loads.add([os.getpid()])
    for labels, templates, embeddings in job.label_embeddings.value:
        classifier.remember_label_embeddings(labels, templates, torch.from_numpy(embeddings))
    return classifier


def label_partition(frames: Iterator[pd.DataFrame], job: SparkLabelJob) -> Iterator[pd.DataFrame]:
    """mapInPandas over one partition: its rows, in order, labelled exactly as a single-machine
    job labels them (same fetcher, batches, fusion and columns). An empty partition loads
    nothing."""
    frames = (frame for frame in frames if len(frame))
    first = next(frames, None)
    if first is None:
        return
    classifier = worker_classifier(job)
    options = FetchOptions.from_settings(
        job.settings, min_size=classifier.input_size, allow_local_files=job.allow_local_files
    )
    fetcher = ImageFetcher(options, pool_size=job.spec.workers)
    stream = RowStream(job.spec, classifier, fetcher)
    rows = (row for frame in chain([first], frames) for row in _text_rows(frame))
    pending: Labelled = []
    try:
        for finished in stream.steps(rows, lambda: job_scorers(classifier, job.spec.label_sets)):
            pending += finished
            if len(pending) >= _ROWS_PER_FRAME:
                yield output_frame(pending, job)
                pending = []
        if pending:
            yield output_frame(pending, job)
    finally:
        fetcher.close()


def _text_rows(frame: pd.DataFrame) -> Iterator[dict[str, Any]]:
    """A pandas batch's rows as {column: text} (missing cells empty), with their row_index."""
    text = frame.drop(columns=[ROW_INDEX]).astype(object)
    text = text.where(text.notna(), "")
    for index, values in zip(frame[ROW_INDEX].tolist(), text.to_dict("records"), strict=True):
        values[ROW_INDEX] = index
        yield values


def output_frame(labelled: Labelled, job: SparkLabelJob) -> pd.DataFrame:
    """Finished rows as the output's columns (see core/spark/job.py)."""
    import pandas as pd

    layout, kept = job.layout, job.kept
    records = [
        [values[ROW_INDEX], *(values.get(c, "") for c in kept)]
        + layout.cells(result.outputs, result.error, result.sides)
        + [_embedding(result)]
        for values, result in labelled
    ]
    frame = pd.DataFrame(records, columns=job.columns)
    for column in confidence_columns(job.added):
        frame[column] = pd.to_numeric(frame[column].replace("", None), errors="coerce")
    frame[EMBEDDING] = frame[EMBEDDING].astype(object)
    return frame


def _embedding(result: RowOutput) -> list[float] | None:
    """The row's image embedding as a list (None when its image failed)."""
    if result.embedding is None:
        return None
    return np.asarray(result.embedding, dtype=np.float32).tolist()
