"""Training a linear probe on a bulk job's output from the job's stored image embeddings: when
the base model's vision tower is the one that made them, no image is fetched or encoded."""

from __future__ import annotations

import csv
from itertools import islice
from pathlib import Path

import numpy as np
import torch

from core.bulk.jobs import JobFolder
from core.embeddings.store import has_embedding, read_meta, take_rows
from core.engine.classifier import ClipClassifier
from core.training.data import LabelledData


def job_rows_by_image(job: JobFolder) -> dict[str, int]:
    """The job's image column value -> its first row index, over the complete result rows."""
    spec, state = job.spec(), job.state()
    done = state.rows_done if state is not None else 0
    rows: dict[str, int] = {}
    with open(job.results_path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        for index, row in enumerate(islice(reader, done)):
            rows.setdefault((row.get(spec.url_column) or "").strip(), index)
    return rows


def stored_training_embeddings(
    job_path: str, base: ClipClassifier, data: LabelledData
) -> tuple[list[int], torch.Tensor] | None:
    """For the data's items whose image has an embedding stored by the job: their indices in
    `data.items` and those embeddings (in that order); None when the job has no stored
    embeddings or they were made by another vision tower (the images are then encoded)."""
    if not job_path:
        return None
    job = JobFolder(Path(job_path))
    meta = read_meta(job.path)
    if meta is None or meta.get("vision_digest") != base.vision_digest or not job.exists():
        return None
    by_image = job_rows_by_image(job)
    found = [(i, by_image.get(item.image.strip())) for i, item in enumerate(data.items)]
    found = [(i, row) for i, row in found if row is not None]
    block = take_rows(job.path, [row for _i, row in found])
    present = has_embedding(block) if len(block) else np.zeros(0, dtype=bool)
    kept = [i for (i, _row), ok in zip(found, present, strict=True) if ok]
    return kept, torch.from_numpy(block[present].copy())
