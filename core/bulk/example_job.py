"""The example job: the example products CSV shipped with the app, labelled with the example
categories (or a linear-probe model's own classes), as a ready-to-run job folder."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from core.bulk.jobs import JobFolder, JobSpec, default_batch_size, new_job_folder
from core.fetch.examples import EXAMPLE_CSV, example_categories
from core.labels.label_set import LabelSet


def new_example_job(
    data_dir: str | Path, model: str, device_type: str, classes: Sequence[str] | None = None
) -> JobFolder:
    """A new job folder over the example products, for `model` (its `classes` when it has a
    probe, else the example categories), with its spec written and nothing run yet."""
    folder = new_job_folder(data_dir, "example-products")
    shutil.copyfile(EXAMPLE_CSV, folder.input_path)
    categories = tuple(classes or example_categories())
    spec = JobSpec(
        input_csv=str(folder.input_path),
        url_column="image_url",
        label_sets=(LabelSet("category", categories),),
        model=model,
        batch_size=default_batch_size(device_type),
    ).with_input_fingerprint()
    folder.write_spec(spec)
    return folder
